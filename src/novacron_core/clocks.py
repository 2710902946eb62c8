"""Clocks for causality: hybrid logical clocks, version vectors and dots.

Nothing here reads the wall clock: callers pass physical time in (sans-IO), so the simulator
can drive the same code with virtual time.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import NamedTuple

ReplicaId = str


class HLCTimestamp(NamedTuple):
    """Totally ordered: (physical ms, logical counter, replica) — the replica breaks ties."""

    wall_ms: int
    logical: int
    replica: ReplicaId = ""

    def to_wire(self) -> list[int | str]:
        return [self.wall_ms, self.logical, self.replica]

    @classmethod
    def from_wire(cls, raw: object) -> HLCTimestamp:
        if (
            not isinstance(raw, list | tuple)
            or len(raw) != 3
            or not isinstance(raw[0], int)
            or not isinstance(raw[1], int)
            or not isinstance(raw[2], str)
        ):
            raise ValueError(f"not an HLC timestamp: {raw!r}")
        return cls(raw[0], raw[1], raw[2])


class HLC:
    """Hybrid logical clock (Kulkarni et al.): close to physical time, never goes backwards.

    ``max_drift_ms`` bounds how far a remote timestamp may run ahead of our physical clock;
    a peer with a wildly wrong clock is rejected instead of dragging everyone's clocks forward.
    """

    __slots__ = ("_last", "max_drift_ms", "replica")

    def __init__(self, replica: ReplicaId, max_drift_ms: int = 500) -> None:
        self.replica = replica
        self.max_drift_ms = max_drift_ms
        self._last = HLCTimestamp(0, 0, replica)

    @property
    def last(self) -> HLCTimestamp:
        return self._last

    def now(self, physical_ms: int) -> HLCTimestamp:
        """A timestamp for a local event or a send."""
        wall, logical = self._last.wall_ms, self._last.logical
        if physical_ms > wall:
            wall, logical = physical_ms, 0
        else:
            logical += 1
        self._last = HLCTimestamp(wall, logical, self.replica)
        return self._last

    def update(self, remote: HLCTimestamp, physical_ms: int) -> HLCTimestamp:
        """Merge a received timestamp; the result orders after both it and our last one."""
        if remote.wall_ms - physical_ms > self.max_drift_ms:
            raise ClockDriftError(
                f"remote clock {remote.wall_ms}ms is {remote.wall_ms - physical_ms}ms ahead of "
                f"ours (limit {self.max_drift_ms}ms)"
            )
        last = self._last
        wall = max(last.wall_ms, remote.wall_ms, physical_ms)
        if wall == last.wall_ms == remote.wall_ms:
            logical = max(last.logical, remote.logical) + 1
        elif wall == last.wall_ms:
            logical = last.logical + 1
        elif wall == remote.wall_ms:
            logical = remote.logical + 1
        else:
            logical = 0
        self._last = HLCTimestamp(wall, logical, self.replica)
        return self._last


class ClockDriftError(ValueError):
    pass


class Order(enum.Enum):
    EQUAL = "equal"
    BEFORE = "before"  # self happened before other
    AFTER = "after"
    CONCURRENT = "concurrent"


class Dot(NamedTuple):
    """One event: the ``counter``-th event of ``replica``."""

    replica: ReplicaId
    counter: int


@dataclass(slots=True)
class VersionVector:
    """replica -> highest contiguous counter seen. Missing entries mean 0."""

    counters: dict[ReplicaId, int]

    def __init__(self, counters: Mapping[ReplicaId, int] | None = None) -> None:
        self.counters = {r: c for r, c in (counters or {}).items() if c > 0}

    def get(self, replica: ReplicaId) -> int:
        return self.counters.get(replica, 0)

    def increment(self, replica: ReplicaId) -> Dot:
        n = self.counters.get(replica, 0) + 1
        self.counters[replica] = n
        return Dot(replica, n)

    def contains(self, dot: Dot) -> bool:
        return self.counters.get(dot.replica, 0) >= dot.counter

    def merge(self, other: VersionVector) -> VersionVector:
        out = dict(self.counters)
        for r, c in other.counters.items():
            if c > out.get(r, 0):
                out[r] = c
        return VersionVector(out)

    def merge_in_place(self, other: VersionVector) -> None:
        for r, c in other.counters.items():
            if c > self.counters.get(r, 0):
                self.counters[r] = c

    def compare(self, other: VersionVector) -> Order:
        le = ge = True
        for r in self.counters.keys() | other.counters.keys():
            a, b = self.get(r), other.get(r)
            if a < b:
                ge = False
            elif a > b:
                le = False
            if not le and not ge:
                return Order.CONCURRENT
        if le and ge:
            return Order.EQUAL
        return Order.BEFORE if le else Order.AFTER

    def dominates(self, other: VersionVector) -> bool:
        """True when self has seen everything other has (self >= other)."""
        return all(self.get(r) >= c for r, c in other.counters.items())

    def meet(self, other: VersionVector) -> VersionVector:
        """Pointwise minimum: what both have seen (used for causal stability)."""
        return VersionVector(
            {r: min(c, other.get(r)) for r, c in self.counters.items() if other.get(r)}
        )

    def copy(self) -> VersionVector:
        return VersionVector(self.counters)

    def to_wire(self) -> dict[str, int]:
        return dict(self.counters)

    @classmethod
    def from_wire(cls, raw: object) -> VersionVector:
        if not isinstance(raw, dict) or not all(
            isinstance(k, str) and isinstance(v, int) and v >= 0 for k, v in raw.items()
        ):
            raise ValueError(f"not a version vector: {raw!r}")
        return cls(raw)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, VersionVector) and self.counters == other.counters

    def __hash__(self) -> int:
        return hash(frozenset(self.counters.items()))


class CausalContext:
    """A set of dots, kept compressed: a version vector plus the dots beyond it (the cloud).

    Delta-state CRDTs (Almeida et al.) ship a context with each delta; compression keeps it
    the size of the replica count rather than of history.
    """

    __slots__ = ("cloud", "vv")

    def __init__(self, vv: VersionVector | None = None, cloud: Iterable[Dot] = ()) -> None:
        self.vv = vv.copy() if vv is not None else VersionVector()
        self.cloud: set[Dot] = set()
        for d in cloud:
            self.add(d)
        self.compact()

    def contains(self, dot: Dot) -> bool:
        return self.vv.contains(dot) or dot in self.cloud

    def next_dot(self, replica: ReplicaId) -> Dot:
        """A fresh dot for a local event (assumes the replica's own dots are contiguous)."""
        return self.vv.increment(replica)

    def add(self, dot: Dot) -> None:
        if self.vv.contains(dot):
            return
        if dot.counter == self.vv.get(dot.replica) + 1:
            self.vv.counters[dot.replica] = dot.counter
            self._absorb(dot.replica)
        else:
            self.cloud.add(dot)

    def _absorb(self, replica: ReplicaId) -> None:
        n = self.vv.get(replica)
        while Dot(replica, n + 1) in self.cloud:
            n += 1
            self.cloud.discard(Dot(replica, n))
        self.vv.counters[replica] = n

    def compact(self) -> None:
        for dot in sorted(self.cloud):
            if self.vv.contains(dot):
                self.cloud.discard(dot)
            elif dot.counter == self.vv.get(dot.replica) + 1:
                self.cloud.discard(dot)
                self.vv.counters[dot.replica] = dot.counter
                self._absorb(dot.replica)

    def merge(self, other: CausalContext) -> None:
        self.vv.merge_in_place(other.vv)
        for d in other.cloud:
            if not self.vv.contains(d):
                self.cloud.add(d)
        self.compact()

    def copy(self) -> CausalContext:
        out = CausalContext(self.vv)
        out.cloud = set(self.cloud)
        return out

    def to_wire(self) -> list[object]:
        # sorted: CRDT encodings must be canonical (equal contexts, equal bytes, whatever order
        # the replicas learnt the entries in), or Merkle hashes of equal states differ
        vv = self.vv.counters
        return [{r: vv[r] for r in sorted(vv)}, sorted([d.replica, d.counter] for d in self.cloud)]

    @classmethod
    def from_wire(cls, raw: object) -> CausalContext:
        if not isinstance(raw, list | tuple) or len(raw) != 2 or not isinstance(raw[1], list):
            raise ValueError(f"not a causal context: {raw!r}")
        dots = []
        for d in raw[1]:
            if (
                not isinstance(d, list | tuple)
                or len(d) != 2
                or not isinstance(d[0], str)
                or not isinstance(d[1], int)
                or d[1] <= 0
            ):
                raise ValueError(f"not a dot: {d!r}")
            dots.append(Dot(d[0], d[1]))
        return cls(VersionVector.from_wire(raw[0]), dots)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CausalContext) and (self.vv, self.cloud) == (
            other.vv,
            other.cloud,
        )

    def __repr__(self) -> str:
        return f"CausalContext({self.vv.counters}, cloud={sorted(self.cloud)})"
