"""Passive outlier detection (Envoy's): eject a backend that keeps failing real requests.

Consecutive server errors (5xx) or consecutive gateway failures (connection errors,
resets, timeouts, 502/504) eject the backend for ``base_ejection_s x times ejected``
(capped at ``max_ejection_s``), so a backend that keeps coming back broken stays out
longer. A refused connection ejects at once (nothing listens there). At most
``max_ejection_percent`` of a group is ejected at a time (but always at least one
backend may be), so a systemic fault cannot empty the pool by ejection alone.
Answers that say "not now" without blaming the backend (429, or 503 from a node whose
group has no leader) are neutral: they neither count as failures nor reset the count.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum


class Outcome(Enum):
    SUCCESS = "success"  # any answer that is not one of the others (2xx-4xx)
    SERVER_ERROR = "server_error"  # 5xx from the backend (not 502/503/504)
    GATEWAY_FAILURE = "gateway_failure"  # reset, timeout, protocol error, 502/504
    REFUSED = "refused"  # connection refused
    NEUTRAL = "neutral"  # 429 / 503: alive, and says why not now


@dataclass(frozen=True, slots=True)
class OutlierSpec:
    consecutive_5xx: int = 5
    consecutive_gateway_failure: int = 3
    eject_on_refused: bool = True
    base_ejection_s: float = 5.0
    max_ejection_s: float = 60.0
    max_ejection_percent: float = 50.0

    def __post_init__(self) -> None:
        if self.consecutive_5xx < 1 or self.consecutive_gateway_failure < 1:
            raise ValueError("outlier: consecutive thresholds must be at least 1")
        if not 0 <= self.max_ejection_percent <= 100:
            raise ValueError("outlier.max_ejection_percent: between 0 and 100")


@dataclass(slots=True)
class _State:
    errors_5xx: int = 0
    gateway_failures: int = 0
    ejections: int = 0
    ejected_until: float = 0.0
    returned_at: float = -math.inf


class OutlierDetector:
    def __init__(self, spec: OutlierSpec) -> None:
        self.spec = spec
        self.state: dict[str, _State] = {}

    def remove(self, backend_id: str) -> None:
        self.state.pop(backend_id, None)

    def success(self, backend_id: str) -> None:
        st = self.state.get(backend_id)
        if st is not None and (st.errors_5xx or st.gateway_failures):
            st.errors_5xx = st.gateway_failures = 0

    def ejected(self, backend_id: str, now: float) -> bool:
        st = self.state.get(backend_id)
        return st is not None and st.ejected_until > now

    def record(
        self, now: float, backend_id: str, outcome: Outcome, group_size: int, group_ejected: int
    ) -> float | None:
        """Count one request's outcome; returns the time the backend is ejected until,
        when this outcome ejects it (None otherwise)."""
        st = self.state.setdefault(backend_id, _State())
        spec = self.spec
        if outcome is Outcome.SUCCESS:
            st.errors_5xx = st.gateway_failures = 0
            return None
        if outcome is Outcome.NEUTRAL:
            return None
        if outcome is Outcome.SERVER_ERROR:
            st.errors_5xx += 1
        else:
            st.gateway_failures += 1
            st.errors_5xx += 1  # Envoy counts gateway failures among the 5xx too
        trip = (
            (outcome is Outcome.REFUSED and spec.eject_on_refused)
            or st.errors_5xx >= spec.consecutive_5xx
            or st.gateway_failures >= spec.consecutive_gateway_failure
        )
        if not trip or st.ejected_until > now:
            return None
        allowed = max(1, math.floor(group_size * spec.max_ejection_percent / 100))
        if group_ejected >= allowed:
            return None
        # a backend that stayed in for a whole max ejection time starts over
        if now - st.returned_at > spec.max_ejection_s:
            st.ejections = 0
        st.ejections += 1
        st.errors_5xx = st.gateway_failures = 0
        st.ejected_until = now + min(spec.base_ejection_s * st.ejections, spec.max_ejection_s)
        return st.ejected_until

    def expire(self, now: float) -> list[str]:
        """Backends whose ejection ends by ``now`` (each reported once)."""
        back = []
        for bid, st in self.state.items():
            if 0 < st.ejected_until <= now:
                st.ejected_until = 0.0
                st.returned_at = now
                back.append(bid)
        return back

    def next_expiry(self) -> float | None:
        times = [st.ejected_until for st in self.state.values() if st.ejected_until > 0]
        return min(times) if times else None

    def describe(self, backend_id: str, now: float) -> dict[str, object]:
        st = self.state.get(backend_id)
        if st is None:
            return {"ejected": False, "ejections": 0}
        return {
            "ejected": st.ejected_until > now,
            "ejected_for_s": round(max(0.0, st.ejected_until - now), 3),
            "ejections": st.ejections,
        }
