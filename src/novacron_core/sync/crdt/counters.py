"""Counters: G-Counter (grow-only) and PN-Counter (two G-Counters).

State is one entry per replica, so metadata is bounded by the replica count, not by history.
"""

from __future__ import annotations

from typing import Any

from novacron_core.sync.crdt.base import Crdt, count, replica_id


class GCounter(Crdt):
    KIND = 1
    __slots__ = ("counts",)

    def __init__(self, replica: str = "", counts: dict[str, int] | None = None) -> None:
        self.replica = replica
        self.counts: dict[str, int] = dict(counts or {})

    def increment(self, n: int = 1) -> GCounter:
        if n < 0:
            raise ValueError("a G-Counter only grows")
        total = self.counts.get(self.replica, 0) + n
        self.counts[self.replica] = total
        return GCounter(counts={self.replica: total})

    def value(self) -> int:
        return sum(self.counts.values())

    def merge(self, other: Any) -> None:
        mine = self.counts
        for r, c in other.counts.items():
            if c > mine.get(r, 0):
                mine[r] = c

    def to_wire(self) -> dict[str, int]:
        return {r: self.counts[r] for r in sorted(self.counts) if self.counts[r]}

    @classmethod
    def from_wire(cls, raw: Any) -> GCounter:
        if not isinstance(raw, dict):
            raise TypeError("a G-Counter is a map")
        return cls(counts={replica_id(k): count(v) for k, v in raw.items()})


class PNCounter(Crdt):
    KIND = 2
    __slots__ = ("neg", "pos")

    def __init__(
        self, replica: str = "", pos: GCounter | None = None, neg: GCounter | None = None
    ) -> None:
        self.replica = replica
        self.pos = pos or GCounter(replica)
        self.neg = neg or GCounter(replica)
        self.pos.replica = self.neg.replica = replica

    def increment(self, n: int = 1) -> PNCounter:
        # whoever set ``replica`` (an OR-Map hands its id to the nested value it mutates) is
        # who counts, not the id the halves were built with
        self.pos.replica = self.neg.replica = self.replica
        if n >= 0:
            return PNCounter(pos=self.pos.increment(n))
        return PNCounter(neg=self.neg.increment(-n))

    def decrement(self, n: int = 1) -> PNCounter:
        return self.increment(-n)

    def value(self) -> int:
        return self.pos.value() - self.neg.value()

    def merge(self, other: Any) -> None:
        self.pos.merge(other.pos)
        self.neg.merge(other.neg)

    def to_wire(self) -> list[Any]:
        return [self.pos.to_wire(), self.neg.to_wire()]

    @classmethod
    def from_wire(cls, raw: Any) -> PNCounter:
        if not isinstance(raw, list) or len(raw) != 2:
            raise TypeError("a PN-Counter is [pos, neg]")
        return cls(pos=GCounter.from_wire(raw[0]), neg=GCounter.from_wire(raw[1]))
