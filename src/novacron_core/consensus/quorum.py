"""Quorum systems: which sets of voters may decide, for each phase of a Paxos-family protocol.

Paxos needs only that every phase-1 quorum (a new leader's Prepare) intersects every
phase-2 quorum (an Accept that chose a value): Howard, Malkhi and Spiegelman's flexible
Paxos (FPaxos, 2016). Majorities for both phases are one answer; the others trade a rare
phase 1 for a cheaper, more frequent phase 2, or follow the deployment's shape:

* :class:`Majority`: ``floor(N/2) + 1`` for both phases;
* :class:`Flexible` (FPaxos): any sizes with ``|Q1| + |Q2| > N``;
* :class:`Weighted`: each voter carries a weight; a quorum is a set whose weight reaches the
  phase's threshold, and no set reaching ``T1`` leaves ``T2`` to the others (checked
  exactly; ``T1 + T2 > total weight`` always suffices);
* :class:`Grid`: voters laid out in rows; phase 1 takes one complete row, phase 2 one voter
  of every row (any row meets any such set);
* :class:`Hierarchical`: a majority of regions, each by a majority of its voters (two such
  sets share a region, and inside it two majorities share a voter).

:class:`EPaxosQuorums` is the sizes of Egalitarian Paxos (Moraru et al., SOSP'13): its fast
quorum ``F + floor((F+1)/2)`` and slow quorum ``F + 1`` for ``N = 2F + 1`` (only the formula;
EPaxos itself lives in its own package).

A quorum system that would let two decisions miss each other is refused when it is built,
with a :class:`QuorumError` naming the sizes, so a bad setting stops a node at start and a
bad membership change is rejected before it is proposed. A strategy (``parse_strategy``)
builds the system for whatever voters the membership has at the time.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol


class QuorumError(ValueError):
    """The quorums asked for do not intersect (or cannot be formed at all)."""


class QuorumSystem(Protocol):
    @property
    def voters(self) -> tuple[str, ...]: ...

    def phase1(self, acks: Collection[str]) -> bool:
        """Whether ``acks`` (voter ids; others are ignored) form a phase-1 quorum."""
        ...

    def phase2(self, acks: Collection[str]) -> bool:
        """Whether ``acks`` form a phase-2 quorum."""
        ...

    def describe(self) -> str: ...


def _voters(voters: Iterable[str]) -> tuple[str, ...]:
    out = tuple(sorted(set(voters)))
    if not out:
        raise QuorumError("a quorum system needs at least one voter")
    return out


def _count(voters: tuple[str, ...], acks: Collection[str]) -> int:
    return sum(1 for a in set(acks) if a in voters)


@dataclass(frozen=True)
class Majority:
    voters: tuple[str, ...]

    def __init__(self, voters: Iterable[str]) -> None:
        object.__setattr__(self, "voters", _voters(voters))

    @property
    def size(self) -> int:
        return len(self.voters) // 2 + 1

    def phase1(self, acks: Collection[str]) -> bool:
        return _count(self.voters, acks) >= self.size

    def phase2(self, acks: Collection[str]) -> bool:
        return _count(self.voters, acks) >= self.size

    def describe(self) -> str:
        return f"majority ({self.size} of {len(self.voters)})"


@dataclass(frozen=True)
class Flexible:
    """FPaxos: ``q2`` voters accept, ``q1`` voters promise; ``q1`` defaults to the least that
    still meets every phase-2 quorum (``N - q2 + 1``)."""

    voters: tuple[str, ...]
    q1: int
    q2: int

    def __init__(self, voters: Iterable[str], q2: int, q1: int | None = None) -> None:
        vs = _voters(voters)
        n = len(vs)
        if q1 is None:
            q1 = n - q2 + 1
        for name, q in (("|Q1|", q1), ("|Q2|", q2)):
            if not 1 <= q <= n:
                raise QuorumError(f"flexible quorum: {name} = {q} must be between 1 and N = {n}")
        if q1 + q2 <= n:
            raise QuorumError(
                f"flexible quorums do not intersect: |Q1| {q1} + |Q2| {q2} = {q1 + q2} "
                f"is not more than N = {n}"
            )
        object.__setattr__(self, "voters", vs)
        object.__setattr__(self, "q1", q1)
        object.__setattr__(self, "q2", q2)

    def phase1(self, acks: Collection[str]) -> bool:
        return _count(self.voters, acks) >= self.q1

    def phase2(self, acks: Collection[str]) -> bool:
        return _count(self.voters, acks) >= self.q2

    def describe(self) -> str:
        return f"flexible (|Q1| {self.q1}, |Q2| {self.q2} of {len(self.voters)})"


@dataclass(frozen=True)
class Weighted:
    """Weighted votes (Gifford 1979). Voters without a weight weigh 1; the thresholds
    default to more than half of the total weight."""

    voters: tuple[str, ...]
    weights: Mapping[str, int]
    t1: int
    t2: int

    def __init__(
        self,
        voters: Iterable[str],
        weights: Mapping[str, int],
        t1: int | None = None,
        t2: int | None = None,
    ) -> None:
        vs = _voters(voters)
        for node, w in weights.items():
            if w < 0:
                raise QuorumError(f"weighted quorum: {node}'s weight {w} is negative")
        ws = {v: int(weights.get(v, 1)) for v in vs}
        total = sum(ws.values())
        if total <= 0:
            raise QuorumError("weighted quorum: the voters' total weight is 0")
        half = total // 2 + 1
        t1 = half if t1 is None else t1
        t2 = half if t2 is None else t2
        for name, t in (("phase-1 weight", t1), ("phase-2 weight", t2)):
            if not 1 <= t <= total:
                raise QuorumError(
                    f"weighted quorum: the {name} {t} must be between 1 and the total {total}"
                )
        split = _split(ws, t1, t2)
        if split is not None:
            side = sum(ws[v] for v in split)
            raise QuorumError(
                f"weighted quorums do not intersect: {', '.join(split)} weigh {side} >= the "
                f"phase-1 weight {t1} while the other voters weigh {total - side} >= the "
                f"phase-2 weight {t2} (total weight {total}; disjoint quorums are impossible "
                f"whenever {t1} + {t2} > {total})"
            )
        object.__setattr__(self, "voters", vs)
        object.__setattr__(self, "weights", ws)
        object.__setattr__(self, "t1", t1)
        object.__setattr__(self, "t2", t2)

    def _weight(self, acks: Collection[str]) -> int:
        return sum(self.weights.get(a, 0) for a in set(acks))

    def phase1(self, acks: Collection[str]) -> bool:
        return self._weight(acks) >= self.t1

    def phase2(self, acks: Collection[str]) -> bool:
        return self._weight(acks) >= self.t2

    def describe(self) -> str:
        total = sum(self.weights.values())
        return f"weighted (phase 1 >= {self.t1}, phase 2 >= {self.t2} of weight {total})"


def _split(weights: Mapping[str, int], t1: int, t2: int) -> tuple[str, ...] | None:
    """Voters weighing at least ``t1`` whose complement weighs at least ``t2`` (a phase-1
    and a phase-2 quorum that miss each other), or None. Exact: a subset-sum search over
    the achievable weights (``t1 + t2 > total`` is sufficient, not necessary: one voter of
    weight 3 with thresholds 2 and 1 is a safe system)."""
    total = sum(weights.values())
    reach: dict[int, tuple[str, ...]] = {0: ()}
    for v, w in sorted(weights.items()):
        for s, members in list(reach.items()):
            reach.setdefault(s + w, (*members, v))
    for s, members in sorted(reach.items()):
        if s >= t1 and total - s >= t2:
            return members
    return None


@dataclass(frozen=True)
class Grid:
    """Voters in id order, row by row, ``cols`` to a row (the last row may be shorter).
    Phase 1: every voter of some row. Phase 2: at least one voter of every row."""

    voters: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]

    def __init__(self, voters: Iterable[str], cols: int) -> None:
        vs = _voters(voters)
        if cols < 1:
            raise QuorumError(f"grid quorum: cols = {cols} must be at least 1")
        rows = tuple(vs[i : i + cols] for i in range(0, len(vs), cols))
        object.__setattr__(self, "voters", vs)
        object.__setattr__(self, "rows", rows)

    def phase1(self, acks: Collection[str]) -> bool:
        got = set(acks)
        return any(all(v in got for v in row) for row in self.rows)

    def phase2(self, acks: Collection[str]) -> bool:
        got = set(acks)
        return all(any(v in got for v in row) for row in self.rows)

    def describe(self) -> str:
        shape = "x".join(str(len(r)) for r in self.rows)
        return f"grid (rows {shape}: a full row to prepare, one of each row to accept)"


@dataclass(frozen=True)
class Hierarchical:
    """A majority of regions, each by a majority of its voters (both phases)."""

    voters: tuple[str, ...]
    regions: Mapping[str, tuple[str, ...]]

    def __init__(self, voters: Iterable[str], region_of: Mapping[str, str]) -> None:
        vs = _voters(voters)
        missing = [v for v in vs if v not in region_of]
        if missing:
            raise QuorumError(
                f"hierarchical quorum: no region for voter(s) {', '.join(missing)} "
                "(name each voter's region in the quorum setting)"
            )
        regions: dict[str, list[str]] = {}
        for v in vs:
            regions.setdefault(region_of[v], []).append(v)
        object.__setattr__(self, "voters", vs)
        object.__setattr__(self, "regions", {r: tuple(ns) for r, ns in sorted(regions.items())})

    def _quorum(self, acks: Collection[str]) -> bool:
        got = set(acks)
        regions_ok = sum(
            1
            for members in self.regions.values()
            if sum(1 for m in members if m in got) >= len(members) // 2 + 1
        )
        return regions_ok >= len(self.regions) // 2 + 1

    def phase1(self, acks: Collection[str]) -> bool:
        return self._quorum(acks)

    def phase2(self, acks: Collection[str]) -> bool:
        return self._quorum(acks)

    def describe(self) -> str:
        sizes = ", ".join(f"{r}: {len(m)}" for r, m in self.regions.items())
        return f"hierarchical (a majority of {len(self.regions)} regions [{sizes}])"


@dataclass(frozen=True)
class EPaxosQuorums:
    """EPaxos quorum sizes for ``n`` replicas (``n = 2F + 1``; an even ``n`` tolerates the
    same F as ``n - 1``). ``optimized``: the paper's fast quorum of ``F + floor((F+1)/2)``
    (section 4.4; its recovery looks for ``floor((F+1)/2)`` matching replies among
    ``F + 1``); otherwise the basic protocol's ``2F``."""

    n: int
    optimized: bool = True
    f: int = field(init=False)
    fast: int = field(init=False)
    slow: int = field(init=False)

    def __post_init__(self) -> None:
        if self.n < 1:
            raise QuorumError(f"EPaxos needs at least one replica, not {self.n}")
        f = (self.n - 1) // 2
        fast = f + (f + 1) // 2 if self.optimized else 2 * f
        object.__setattr__(self, "f", f)
        object.__setattr__(self, "fast", max(1, fast))
        object.__setattr__(self, "slow", self.n // 2 + 1)  # F + 1 when n is odd
        if 2 * self.slow <= self.n:
            raise QuorumError(f"EPaxos slow quorums of {self.slow} of {self.n} do not intersect")
        if self.fast + self.slow - self.n < self.recovery_overlap:
            raise QuorumError(
                f"EPaxos fast quorum {self.fast} and slow quorum {self.slow} of {self.n} share "
                f"fewer than the {self.recovery_overlap} replicas recovery relies on"
            )

    @property
    def recovery_overlap(self) -> int:
        """How many members of any fast quorum every slow quorum holds, at least."""
        return (self.f + 1) // 2 if self.optimized else self.f

    def fast_quorum(self, acks: Collection[str]) -> bool:
        return len(set(acks)) >= self.fast

    def slow_quorum(self, acks: Collection[str]) -> bool:
        return len(set(acks)) >= self.slow


# ------------------------------------------------------------------ strategies


Build = Callable[[tuple[str, ...]], QuorumSystem]


@dataclass(frozen=True)
class QuorumStrategy:
    """How to build a quorum system for whatever the voters are (``spec`` is the setting it
    came from, e.g. ``"flexible:q2=2"``)."""

    spec: str
    build: Build

    def __call__(self, voters: Iterable[str]) -> QuorumSystem:
        return self.build(_voters(voters))


MAJORITY = QuorumStrategy("majority", Majority)

SPEC_HELP = (
    "majority | flexible:q2=N[,q1=M] | weighted:NODE=W,...[,q1=T][,q2=T] | grid:cols=C | "
    "hierarchical:NODE=REGION,..."
)


def parse_strategy(spec: str) -> QuorumStrategy:
    """A strategy from its setting. Errors name the part that is wrong."""
    text = spec.strip()
    kind, _, rest = text.partition(":")
    params: dict[str, str] = {}
    for item in filter(None, (p.strip() for p in rest.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise QuorumError(f"quorum {spec!r}: {item!r} is not key=value ({SPEC_HELP})")
        params[key.strip()] = value.strip()
    kind = kind.strip()

    def ints(*names: str) -> dict[str, int]:
        out = {}
        for name in names:
            if name in params:
                try:
                    out[name] = int(params[name])
                except ValueError:
                    raise QuorumError(
                        f"quorum {spec!r}: {name} must be an integer, not {params[name]!r}"
                    ) from None
        return out

    def only(*allowed: str) -> None:
        extra = sorted(set(params) - set(allowed))
        if extra:
            raise QuorumError(f"quorum {spec!r}: unknown parameter(s) {', '.join(extra)}")

    if kind == "majority":
        only()
        return QuorumStrategy(text, Majority)
    if kind == "flexible":
        only("q1", "q2")
        got = ints("q1", "q2")
        if "q2" not in got:
            raise QuorumError(f"quorum {spec!r}: flexible needs q2 (the phase-2 quorum size)")
        q1, q2 = got.get("q1"), got["q2"]
        return QuorumStrategy(text, lambda vs: Flexible(vs, q2, q1))
    if kind == "weighted":
        th = ints("q1", "q2")
        weights = {}
        for node, w in params.items():
            if node in ("q1", "q2"):
                continue
            try:
                weights[node] = int(w)
            except ValueError:
                raise QuorumError(f"quorum {spec!r}: {node}'s weight must be an integer") from None
        return QuorumStrategy(text, lambda vs: Weighted(vs, weights, th.get("q1"), th.get("q2")))
    if kind == "grid":
        only("cols")
        cols = ints("cols").get("cols")
        if cols is None:
            raise QuorumError(f"quorum {spec!r}: grid needs cols (voters per row)")
        return QuorumStrategy(text, lambda vs: Grid(vs, cols))
    if kind == "hierarchical":
        region_of = dict(params)
        if not region_of:
            raise QuorumError(f"quorum {spec!r}: hierarchical needs NODE=REGION for each voter")
        return QuorumStrategy(text, lambda vs: Hierarchical(vs, region_of))
    raise QuorumError(f"quorum {spec!r}: unknown kind {kind!r} (one of: {SPEC_HELP})")
