"""Delta-state CRDTs, one module per family, sharing :class:`Crdt` and one wire format."""

from novacron_core.sync.crdt.base import Atom, Crdt, decode_crdt, encode_crdt, kind_of
from novacron_core.sync.crdt.counters import GCounter, PNCounter
from novacron_core.sync.crdt.ormap import ORMap
from novacron_core.sync.crdt.orset import ORSet
from novacron_core.sync.crdt.registers import LWWRegister, MVRegister
from novacron_core.sync.crdt.rga import RGA, RgaDelta
from novacron_core.sync.crdt.sets import GSet, TwoPSet

__all__ = [
    "RGA",
    "Atom",
    "Crdt",
    "GCounter",
    "GSet",
    "LWWRegister",
    "MVRegister",
    "ORMap",
    "ORSet",
    "PNCounter",
    "RgaDelta",
    "TwoPSet",
    "decode_crdt",
    "encode_crdt",
    "kind_of",
]
