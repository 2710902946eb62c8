"""Active health checking, decided here and performed by the process.

The checker says *when* to probe which backend and what a result means; the process runs
the probe (a TCP connect, an HTTP(S) GET, or a custom callable) and reports back. A
backend turns unhealthy after ``unhealthy_threshold`` consecutive failures and healthy
after ``healthy_threshold`` consecutive successes (HAProxy's fall/rise). Two shortcuts:

- a refused connection is not an opinion but a fact (nothing listens there), so it marks
  the backend down at once and *known down* (even panic routing skips it);
- a new backend counts as healthy after its first success (and is probed at once), so a
  gateway starting up does not wait ``healthy_threshold`` intervals.

Probes are spread with a deterministic jitter so that a fleet of backends is not probed
in lockstep.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Literal

import xxhash

CheckKind = Literal["none", "tcp", "http", "https", "custom"]


@dataclass(frozen=True, slots=True)
class CheckSpec:
    kind: CheckKind = "http"
    path: str = "/healthz"
    interval_s: float = 1.0
    unhealthy_interval_s: float = 0.5  # probe faster while down, to notice a return
    timeout_s: float = 0.5
    unhealthy_threshold: int = 2
    healthy_threshold: int = 2
    expect_status: tuple[int, int] = (200, 399)  # inclusive range counted as success
    jitter: float = 0.1  # each interval stretched by up to this share
    custom: str = ""  # name of a custom check the process knows

    def __post_init__(self) -> None:
        if self.interval_s <= 0 or self.unhealthy_interval_s <= 0 or self.timeout_s <= 0:
            raise ValueError("health: interval, unhealthy interval and timeout must be > 0")
        if self.unhealthy_threshold < 1 or self.healthy_threshold < 1:
            raise ValueError("health: thresholds must be at least 1")
        if self.kind == "custom" and not self.custom:
            raise ValueError("health.custom: name the custom check")


class Verdict(Enum):
    OK = "ok"
    FAILED = "failed"  # timeout, bad status, reset: maybe transient
    REFUSED = "refused"  # connection refused: nothing listens


@dataclass(slots=True)
class _State:
    healthy: bool
    known_down: bool = False
    fails: int = 0
    oks: int = 0
    fresh: bool = True  # never succeeded yet
    due: float = 0.0
    running: bool = False
    phase: float = 0.0  # deterministic jitter share in [0, 1)
    last: str = ""


class HealthChecker:
    """Health of each backend by id, from probe results and passive hints."""

    def __init__(self, spec: CheckSpec) -> None:
        self.spec = spec
        self.state: dict[str, _State] = {}

    @property
    def active(self) -> bool:
        return self.spec.kind != "none"

    def add(self, now: float, backend_id: str) -> None:
        if backend_id in self.state:
            return
        phase = xxhash.xxh3_64_intdigest(backend_id.encode()) / 2**64
        self.state[backend_id] = _State(healthy=not self.active, due=now, phase=phase)

    def remove(self, backend_id: str) -> None:
        self.state.pop(backend_id, None)

    def healthy(self, backend_id: str) -> bool:
        st = self.state.get(backend_id)
        return st is not None and st.healthy

    def known_down(self, backend_id: str) -> bool:
        st = self.state.get(backend_id)
        return st is not None and st.known_down

    def due(self, now: float) -> list[str]:
        """Backends to probe now; each is marked running until its result comes."""
        if not self.active:
            return []
        out = []
        for bid, st in self.state.items():
            if not st.running and st.due <= now:
                st.running = True
                out.append(bid)
        return out

    def next_due(self) -> float | None:
        if not self.active:
            return None
        dues = [st.due for st in self.state.values() if not st.running]
        return min(dues) if dues else None

    def nudge(self, now: float, backend_id: str) -> None:
        """A passive hint (e.g. a pooled connection to it closed): probe it now."""
        st = self.state.get(backend_id)
        if st is not None and self.active and not st.running:
            st.due = min(st.due, now)

    def result(self, now: float, backend_id: str, verdict: Verdict, detail: str = "") -> bool:
        """Record a probe result; returns True when the backend's health changed."""
        st = self.state.get(backend_id)
        if st is None:
            return False
        spec = self.spec
        st.running = False
        st.last = detail or verdict.value
        before = (st.healthy, st.known_down)
        if verdict is Verdict.OK:
            st.oks += 1
            st.fails = 0
            st.known_down = False
            if not st.healthy and (st.fresh or st.oks >= spec.healthy_threshold):
                st.healthy = True
            st.fresh = False
        else:
            st.fails += 1
            st.oks = 0
            if verdict is Verdict.REFUSED:
                st.known_down = True
                st.healthy = False
            elif st.fails >= spec.unhealthy_threshold:
                st.healthy = False
        interval = spec.interval_s if st.healthy else spec.unhealthy_interval_s
        st.due = now + interval * (1.0 + spec.jitter * st.phase)
        return (st.healthy, st.known_down) != before

    def passive_refused(self, now: float, backend_id: str) -> bool:
        """A request's connection was refused: as conclusive as a refused probe."""
        st = self.state.get(backend_id)
        if st is None or not self.active or st.known_down:
            return False
        running = st.running
        changed = self.result(now, backend_id, Verdict.REFUSED, "refused (request)")
        st.running = running  # a probe already under way still reports
        return changed

    def describe(self, backend_id: str) -> dict[str, object]:
        st = self.state.get(backend_id)
        if st is None:
            return {}
        return {"healthy": st.healthy, "known_down": st.known_down, "last_check": st.last}
