"""A backend as the balancer sees it: where it is, what it weighs, and the live counters
the algorithms read (requests in flight, response-time EWMA, when it (re)joined).

The balancer owns every mutation; the process only reports events (a request started or
finished, a probe result) with the time they happened.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from novacron_core.balancing.geo import GeoPoint


@dataclass(frozen=True, slots=True)
class SlowStart:
    """Envoy's slow start: a backend that just joined (or came back healthy) gets
    ``weight * max(min_weight, (age / window) ** (1 / aggression))`` until ``window``
    seconds have passed, so a cold node is not handed its full share at once."""

    window_s: float = 10.0
    aggression: float = 1.0
    min_weight: float = 0.1

    def factor(self, age_s: float) -> float:
        if self.window_s <= 0 or age_s >= self.window_s:
            return 1.0
        share = max(age_s, 0.0) / self.window_s
        return max(self.min_weight, float(share ** (1.0 / self.aggression)))


NO_SLOW_START = SlowStart(window_s=0.0)
MIN_SAMPLE_SHARE = 0.05


@dataclass(eq=False, slots=True)
class Backend:
    """``id`` is unique within a balancer (e.g. ``us-east1/n1``); the rest is mutable
    state updated by the balancer from the events it is given."""

    id: str
    host: str
    port: int
    region: str = ""
    zone: str = ""
    weight: int = 1
    priority: int = 0
    location: GeoPoint | None = None
    # live counters
    active: int = 0  # requests in flight
    ewma_s: float = math.nan  # response-time EWMA (seconds); nan until the first sample
    ewma_at: float = 0.0
    since: float = 0.0  # joined or came back healthy at (slow start counts from here)
    requests: int = 0
    last_sent: float = -math.inf  # when a request was last handed to it
    # state (set by the balancer's health, outlier, circuit and draining parts)
    healthy: bool = True
    ejected_until: float = 0.0
    ejections: int = 0
    circuit_open: bool = False
    draining: bool = False
    drain_deadline: float = math.inf
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def effective_weight(self, now: float, slow: SlowStart) -> float:
        return self.weight * slow.factor(now - self.since)

    def observe_latency(self, now: float, latency_s: float, tau_s: float) -> None:
        """Time-decayed EWMA (as Finagle's): a sample counts ``1 - exp(-dt/tau)``, so the
        average forgets at the same speed however many requests arrive; at least
        ``MIN_SAMPLE_SHARE``, so a burst of answers within one instant still moves it."""
        if math.isnan(self.ewma_s):
            self.ewma_s = latency_s
        else:
            x = (now - self.ewma_at) / tau_s if tau_s > 0 else math.inf
            # 1 - exp(-x) <= x: under a steady stream of answers (x tiny) the floor wins
            # and the exponential need not be computed
            share = (
                MIN_SAMPLE_SHARE
                if x <= MIN_SAMPLE_SHARE
                else max(1.0 - math.exp(-x), MIN_SAMPLE_SHARE)
            )
            self.ewma_s += (latency_s - self.ewma_s) * share
        self.ewma_at = now
