"""The regional health score: 0-100 from five documented inputs, with its breakdown.

Sans-IO: callers pass measurements and the current time; nothing here reads a clock.

Each input maps to a component score in [0, 1] that is 1 up to a "good" value and falls
linearly to 0 at a "bad" value (:class:`Ramp`); the total is the weighted sum of the
components scaled to 100. An input nobody measured (``None``: a single-region node has
no inter-region conflicts to count) drops out and its weight is shared among the others,
so the score never pretends a missing signal is perfect or broken. A region without a
leader cannot take writes: its score is capped at ``no_leader_cap`` whatever else holds.

The inputs, their defaults and why they are what they are: docs/observability.md.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

COMPONENTS = ("leader", "replication", "errors", "links", "conflicts")


@dataclass(frozen=True, slots=True)
class Ramp:
    """1.0 at or below ``good``, 0.0 at or above ``bad``, linear in between."""

    good: float
    bad: float

    def __call__(self, value: float) -> float:
        if value <= self.good:
            return 1.0
        if value >= self.bad:
            return 0.0
        return 1.0 - (value - self.good) / (self.bad - self.good)


@dataclass(frozen=True, slots=True)
class HealthPolicy:
    # weights (points out of 100 when every input is measured)
    leader_weight: float = 30.0
    replication_weight: float = 20.0
    errors_weight: float = 25.0
    links_weight: float = 15.0
    conflicts_weight: float = 10.0
    # leader stability: elections started in the window (one is a normal failover)
    elections: Ramp = Ramp(good=1, bad=5)
    # replication lag: entries the slowest voter is behind the leader (or this node
    # behind the commit index it heard); a few thousand is a snapshot's worth
    lag_entries: Ramp = Ramp(good=100, bad=5_000)
    # error rate: 5xx share of client requests (an availability SLO of 99.9 % allows 0.1 %)
    error_ratio: Ramp = Ramp(good=0.001, bad=0.05)
    # link health: share of peer links down (a region of 3 survives one)
    links_down_ratio: Ramp = Ramp(good=0.0, bad=0.5)
    # conflicts: concurrent-write merges per second across regions
    conflicts_per_s: Ramp = Ramp(good=0.1, bad=10.0)
    no_leader_cap: float = 25.0

    def weights(self) -> dict[str, float]:
        return {
            "leader": self.leader_weight,
            "replication": self.replication_weight,
            "errors": self.errors_weight,
            "links": self.links_weight,
            "conflicts": self.conflicts_weight,
        }


@dataclass(frozen=True, slots=True)
class HealthInputs:
    """What the score is computed from (``None``: not measured, left out)."""

    leader_present: bool
    elections: float | None = None  # elections started in the window
    lag_entries: float | None = None
    error_ratio: float | None = None  # 0..1
    links_down_ratio: float | None = None  # 0..1
    conflicts_per_s: float | None = None


@dataclass(frozen=True, slots=True)
class Component:
    name: str
    input: float | None
    score: float | None  # 0..1, None when not measured
    weight: float  # effective weight after redistributing unmeasured ones
    points: float  # score * weight


@dataclass(frozen=True, slots=True)
class HealthScore:
    score: float  # 0..100
    components: tuple[Component, ...]
    capped: str | None = None  # why the score was capped, if it was

    def as_dict(self) -> dict[str, Any]:
        return {
            "score": round(self.score, 1),
            "capped": self.capped,
            "components": {
                c.name: {
                    "input": c.input,
                    "score": None if c.score is None else round(c.score, 3),
                    "weight": round(c.weight, 2),
                    "points": round(c.points, 2),
                }
                for c in self.components
            },
        }


def score(inputs: HealthInputs, policy: HealthPolicy | None = None) -> HealthScore:
    p = policy or HealthPolicy()
    # leader stability: no leader is 0; otherwise how calm elections have been
    leader = 0.0
    if inputs.leader_present:
        leader = 1.0 if inputs.elections is None else p.elections(inputs.elections)
    raw: dict[str, tuple[float | None, float | None]] = {
        "leader": (inputs.elections, leader),
        "replication": _scored(inputs.lag_entries, p.lag_entries),
        "errors": _scored(inputs.error_ratio, p.error_ratio),
        "links": _scored(inputs.links_down_ratio, p.links_down_ratio),
        "conflicts": _scored(inputs.conflicts_per_s, p.conflicts_per_s),
    }
    weights = p.weights()
    measured = sum(weights[n] for n, (_, s) in raw.items() if s is not None)
    scale = 100.0 / measured if measured else 0.0
    comps = []
    for name in COMPONENTS:
        value, s = raw[name]
        w = weights[name] * scale if s is not None else 0.0
        comps.append(Component(name, value, s, w, (s or 0.0) * w))
    total = sum(c.points for c in comps)
    capped = None
    if not inputs.leader_present and total > p.no_leader_cap:
        total, capped = p.no_leader_cap, "no leader: the region cannot take writes"
    return HealthScore(max(0.0, min(100.0, total)), tuple(comps), capped)


def _scored(value: float | None, ramp: Ramp) -> tuple[float | None, float | None]:
    return value, (None if value is None else ramp(value))


@dataclass
class HealthWindow:
    """Turns cumulative counters sampled over time into :class:`HealthInputs` for the last
    ``window_s`` seconds (sans-IO: every call passes ``now``).

    Counters (elections, requests, errors, conflicts) are cumulative, as a node exposes
    them; gauges (lag, links down) are the latest sample. A counter that goes backwards
    (a restart) restarts the window from that sample rather than reporting a negative rate.
    """

    window_s: float = 300.0
    _samples: deque[tuple[float, dict[str, float]]] = field(default_factory=deque)
    _gauges: dict[str, float | None] = field(default_factory=dict)
    _leader: bool = False

    def observe(
        self,
        now: float,
        *,
        leader_present: bool,
        elections: float,
        requests: float,
        errors: float,
        lag_entries: float | None,
        links_down_ratio: float | None,
        conflicts: float | None = None,
    ) -> None:
        counters = {"elections": elections, "requests": requests, "errors": errors}
        if conflicts is not None:
            counters["conflicts"] = conflicts
        if self._samples and any(counters.get(k, 0) < v for k, v in self._samples[-1][1].items()):
            self._samples.clear()  # a counter reset
        self._samples.append((now, counters))
        while len(self._samples) > 2 and self._samples[1][0] <= now - self.window_s:
            self._samples.popleft()
        self._leader = leader_present
        self._gauges = {"lag": lag_entries, "links": links_down_ratio}

    def inputs(self) -> HealthInputs:
        if not self._samples:
            return HealthInputs(leader_present=self._leader)
        t0, first = self._samples[0]
        t1, last = self._samples[-1]
        span = t1 - t0
        requests = last["requests"] - first["requests"]
        errors = last["errors"] - first["errors"]
        conflicts: float | None = None
        if "conflicts" in last and "conflicts" in first and span > 0:
            conflicts = (last["conflicts"] - first["conflicts"]) / span
        return HealthInputs(
            leader_present=self._leader,
            elections=last["elections"] - first["elections"],
            lag_entries=self._gauges.get("lag"),
            error_ratio=(errors / requests) if requests > 0 else (0.0 if span > 0 else None),
            links_down_ratio=self._gauges.get("links"),
            conflicts_per_s=conflicts,
        )

    def score(self, policy: HealthPolicy | None = None) -> HealthScore:
        return score(self.inputs(), policy)
