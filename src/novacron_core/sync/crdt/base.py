"""The interface every CRDT shares, and the one wire format for all of them.

Delta-state CRDTs (Almeida, Shoker, Baquero): a mutator changes the local state and returns a
small *delta*, itself a value of the lattice, so ``merge`` (the join) takes states and deltas
alike. Deltas can be joined with each other into a buffer before they are shipped.

On the wire every value is ``msgpack([kind, body])``; ``kind`` picks the class from a registry
so nested values (OR-Map) and the store can carry any type. ``decode_crdt`` turns every failure
into :class:`~novacron_core.codec.CodecError`, because the bytes come from peers.
"""

from __future__ import annotations

import struct
from abc import ABC, abstractmethod
from collections.abc import Hashable, Iterable
from typing import Any, ClassVar, TypeVar

import msgpack

from novacron_core.clocks import CausalContext, Dot, VersionVector
from novacron_core.codec import CodecError

Atom = str | int | float | bytes | bool | None
_ATOMS = (str, int, float, bytes, bool, type(None))

_T = TypeVar("_T", bound="Crdt")
_KINDS: dict[int, type[Crdt]] = {}


class Crdt(ABC):
    """A join-semilattice value. Subclasses register a stable ``KIND`` (wire tag)."""

    KIND: ClassVar[int]
    # True if ``gc`` drops what a replica holds (the RGA's tombstones), not just metadata every
    # replica has: then a replica holding less than it acknowledged must not mutate it until
    # caught up (engine)
    COLLAPSES: ClassVar[bool] = False
    # True if ``gc(stable)`` needs ``stable`` to cover only events whose *concurrent* events
    # every replica has applied too (an RGA tombstone may go only once no insert naming it can
    # still arrive): the engine then holds the key's stable point back one report round
    SETTLES: ClassVar[bool] = False
    replica: str  # who mutates this copy ("" for deltas and decoded values)
    __slots__ = ("replica",)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        kind = cls.__dict__.get("KIND")
        if kind is not None:
            if kind in _KINDS and _KINDS[kind] is not cls:
                raise TypeError(f"CRDT kind {kind} taken by {_KINDS[kind].__name__}")
            _KINDS[kind] = cls

    @abstractmethod
    def merge(self, other: Any) -> None:
        """Join ``other`` (a state or a delta of a compatible type) into self, in place."""

    @abstractmethod
    def value(self) -> Any:
        """The plain value users see."""

    @abstractmethod
    def to_wire(self) -> Any:
        """msgpack-able body; canonical (equal states give equal bodies)."""

    @classmethod
    @abstractmethod
    def from_wire(cls: type[_T], raw: Any) -> _T:
        """Inverse of :meth:`to_wire`; raises ValueError/TypeError on anything malformed."""

    def copy(self: _T) -> _T:
        return type(self).from_wire(self.to_wire())

    def state_class(self) -> type[Crdt]:
        """The type a replica holds once it merged this value (deltas may differ: RGA)."""
        return type(self)

    def top(self, replica: str) -> int:
        """The highest CRDT-level counter of ``replica``'s own events this value (a delta)
        carries, in the space ``gc(stable)`` reads (0: none, or nothing to collect)."""
        ctx = getattr(self, "ctx", None)
        if not isinstance(ctx, CausalContext):
            return 0
        top = ctx.vv.get(replica)
        for d in ctx.cloud:
            if d.replica == replica and d.counter > top:
                top = d.counter
        return top

    def gc(self, stable: VersionVector) -> None:  # noqa: B027 - most types have nothing to drop
        """Drop metadata about events every replica has seen (``stable`` = meet of all VVs)."""

    def empty(self: _T) -> _T:
        """The bottom of this lattice (what a replica that saw nothing holds)."""
        return type(self).from_wire(type(self).bottom_wire())

    @classmethod
    def bottom_wire(cls) -> Any:
        return cls().to_wire()

    def __eq__(self, other: object) -> bool:
        # equal encodings, not equal Python values: ``[1] == [True]`` in Python, and two states
        # whose bytes differ would keep anti-entropy's Merkle hashes apart for good
        return type(other) is type(self) and encode_crdt(self) == encode_crdt(other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.value()!r})"


def kind_of(kind: int) -> type[Crdt]:
    cls = _KINDS.get(kind)
    if cls is None:
        raise ValueError(f"unknown CRDT kind {kind}")
    return cls


def to_tagged(value: Crdt) -> list[Any]:
    return [value.KIND, value.to_wire()]


def from_tagged(raw: Any) -> Crdt:
    if not isinstance(raw, list) or len(raw) != 2 or type(raw[0]) is not int:
        raise ValueError("a CRDT is [kind, body]")
    return kind_of(raw[0]).from_wire(raw[1])


def encode_crdt(value: Crdt) -> bytes:
    out: bytes = msgpack.packb(to_tagged(value), use_bin_type=True)
    return out


def decode_crdt(payload: bytes, max_size: int = 16 * 1024 * 1024) -> Crdt:
    """Bytes from a peer -> CRDT. Raises :class:`CodecError` and nothing else."""
    if not isinstance(payload, bytes | bytearray | memoryview) or len(payload) > max_size:
        raise CodecError("not a CRDT payload")
    try:
        raw = msgpack.unpackb(payload, raw=False, strict_map_key=False, max_ext_len=0)
        return from_tagged(raw)
    except RecursionError:
        raise CodecError("CRDT nested too deeply") from None
    except Exception as e:  # msgpack and validators raise many types for garbage
        raise CodecError(f"invalid CRDT: {e}") from None


# ---------------------------------------------------------------- wire validators


def atom(v: Any) -> Atom:
    if not isinstance(v, _ATOMS):
        raise TypeError(f"not an atom: {type(v).__name__}")
    return v


def replica_id(v: Any) -> str:
    if type(v) is not str:
        raise TypeError("replica id must be a string")
    return v


def count(v: Any) -> int:
    if type(v) is not int or v < 0:
        raise ValueError("expected a non-negative integer")
    return v


def dot_from_wire(v: Any) -> Dot:
    if not isinstance(v, list) or len(v) != 2:
        raise ValueError("a dot is [replica, counter]")
    n = count(v[1])
    if n == 0:
        raise ValueError("dot counters start at 1")
    return Dot(replica_id(v[0]), n)


def context_from_wire(v: Any) -> CausalContext:
    return CausalContext.from_wire(v)


def sorted_atoms(items: Any) -> list[Any]:
    """Canonical order for atoms of mixed types (msgpack bytes order is total and stable)."""
    return sorted(items, key=_atom_key)


def _atom_key(v: Any) -> bytes:
    out: bytes = msgpack.packb(v, use_bin_type=True)
    return out


# ---------------------------------------------------------------- element identity
# Sets and map keys hold atoms by their *typed* identity, as the wire does: Python's
# ``1 == True == 1.0`` (one hash) would merge three elements that encode differently, and the
# replicas that stored different ones would keep different bytes for equal-looking states.
# Strings, bytes, ints and None are their own key (they never compare equal across those
# types); a bool or float is wrapped in a tuple (never an atom) tagged with its type, floats by
# their IEEE bits so that -0.0 and 0.0 differ and NaN equals itself, exactly as encoded.

Key = Hashable
_F64 = struct.Struct(">d")


def key_of(x: Atom) -> Key:
    t = type(x)
    if t is bool:
        return ("b", x)
    if t is float:
        return ("f", _F64.pack(x))
    return x


def atom_of(k: Key) -> Atom:
    if type(k) is tuple:
        tag, raw = k
        return bool(raw) if tag == "b" else float(_F64.unpack(raw)[0])
    return k  # type: ignore[return-value]


def sorted_keys(keys: Iterable[Key]) -> list[Key]:
    """Element keys in the canonical (wire) order of their atoms."""
    return sorted(keys, key=lambda k: _atom_key(atom_of(k)))
