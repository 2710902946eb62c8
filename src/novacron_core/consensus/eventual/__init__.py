"""Eventual consistency behind the consensus interface: each replica applies a write at
once and the federation's CRDT engine (``sync/``) converges the replicas; replies say
``consistency: eventual``. ``PROTOCOL`` is what the node knows."""

from novacron_core.consensus.eventual.node import EventualMember
from novacron_core.consensus.eventual.protocol import PROTOCOL
from novacron_core.consensus.eventual.storage import EventualDurable

__all__ = ["PROTOCOL", "EventualDurable", "EventualMember"]
