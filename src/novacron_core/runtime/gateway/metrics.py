"""The gateway's metrics: RED (rate, errors, duration) per route kind and status, the
HPA's request rate, and the state of every backend.

Counted in plain integers on the hot path and turned into Prometheus families only when
scraped (a ``prometheus_client`` Counter costs a lock and a label lookup per increment).
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class RateWindow:
    """Events per second over the last ``window_s`` seconds, in one-second buckets
    (sans-IO: the caller passes the time). A sliding window, so the HPA sees a rate
    that neither jumps at scrape boundaries nor lags behind a long average."""

    def __init__(self, window_s: int = 10) -> None:
        if window_s < 1:
            raise ValueError("window_s: at least 1")
        self.window = window_s
        self.buckets = [0] * (window_s + 1)
        self.second = 0
        self.started: float | None = None

    def add(self, now: float, n: int = 1) -> None:
        if self.started is None or int(now) != self.second:
            self._advance(now)
        self.buckets[self.second % len(self.buckets)] += n

    def rate(self, now: float) -> float:
        self._advance(now)
        assert self.started is not None
        n = len(self.buckets)
        # the current (partial) second, the W-1 full ones before it, and the part of the
        # oldest second that still lies inside the window
        frac = now - self.second
        recent = sum(self.buckets[(self.second - i) % n] for i in range(self.window))
        oldest = self.buckets[(self.second - self.window) % n]
        count = recent + (1.0 - frac) * oldest
        elapsed = now - self.started
        return count / (self.window if elapsed >= self.window else max(elapsed, 1.0))

    def _advance(self, now: float) -> None:
        sec = int(now)
        if self.started is None:
            self.started = now
            self.second = sec
            return
        if sec <= self.second:
            return
        steps = min(sec - self.second, len(self.buckets))
        for i in range(1, steps + 1):
            self.buckets[(self.second + i) % len(self.buckets)] = 0
        self.second = sec


class Stats:
    def __init__(self) -> None:
        self.requests: dict[tuple[str, int], int] = {}
        self.duration: dict[str, list[float]] = {}  # per route: bucket counts, sum, count
        self.rate = RateWindow(10)
        self.retries: dict[str, int] = {}
        self.outcome_unknown = 0
        self.refused: dict[str, int] = {}
        self.rejected_by_status: dict[int, int] = {}
        self.upstream: dict[tuple[str, str], int] = {}

    def request(self, now: float, route: str, status: int, seconds: float) -> None:
        key = (route, status)
        self.requests[key] = self.requests.get(key, 0) + 1
        d = self.duration.get(route)
        if d is None:
            d = self.duration[route] = [0.0] * (len(BUCKETS) + 3)
        d[bisect.bisect_left(BUCKETS, seconds)] += 1
        d[-2] += seconds
        d[-1] += 1
        self.rate.add(now)

    def retry(self, reason: str) -> None:
        self.retries[reason] = self.retries.get(reason, 0) + 1

    def refuse(self, reason: str) -> None:
        self.refused[reason] = self.refused.get(reason, 0) + 1

    def rejected(self, status: int) -> None:
        self.rejected_by_status[status] = self.rejected_by_status.get(status, 0) + 1

    def upstream_outcome(self, region: str, outcome: str) -> None:
        key = (region, outcome)
        self.upstream[key] = self.upstream.get(key, 0) + 1


class GatewayCollector:
    """Prometheus view of :class:`Stats` plus live state read at scrape time."""

    def __init__(self, stats: Stats, clock: Callable[[], float], live: Callable[[], Any]) -> None:
        self.stats, self.clock, self.live = stats, clock, live

    def collect(self) -> Iterator[Metric]:
        s = self.stats
        now = self.clock()
        rps = GaugeMetricFamily(
            "novacron_gateway_requests_per_second",
            "Requests answered per second over the last 10 s (the HPA's metric)",
        )
        rps.add_metric([], s.rate.rate(now))
        yield rps
        total = CounterMetricFamily(
            "novacron_gateway_requests",
            "Requests answered, by route kind and status code",
            labels=["route", "code"],
        )
        for (route, code), n in sorted(s.requests.items()):
            total.add_metric([route, str(code)], n)
        yield total
        hist = HistogramMetricFamily(
            "novacron_gateway_request_duration_seconds",
            "Time from a request's first byte to its last response byte",
            labels=["route"],
        )
        for route, d in sorted(s.duration.items()):
            acc = 0.0
            buckets: list[tuple[str, float]] = []
            for bound, count in zip(BUCKETS, d, strict=False):
                acc += count
                buckets.append((repr(bound), acc))
            buckets.append(("+Inf", d[-1]))
            hist.add_metric([route], buckets, d[-2])
        yield hist
        retries = CounterMetricFamily(
            "novacron_gateway_retries",
            "Attempts sent again elsewhere, by reason",
            labels=["reason"],
        )
        for reason, n in sorted(s.retries.items()):
            retries.add_metric([reason], n)
        yield retries
        unknown = CounterMetricFamily(
            "novacron_gateway_outcome_unknown",
            "Requests answered 502/504 because a backend failed after receiving them",
        )
        unknown.add_metric([], s.outcome_unknown)
        yield unknown
        refused = CounterMetricFamily(
            "novacron_gateway_refused",
            "Requests refused by the gateway itself (limits, no backend), by reason",
            labels=["reason"],
        )
        for reason, n in sorted(s.refused.items()):
            refused.add_metric([reason], n)
        for status, n in sorted(s.rejected_by_status.items()):
            refused.add_metric([f"http_{status}"], n)
        yield refused
        upstream = CounterMetricFamily(
            "novacron_gateway_upstream_attempts",
            "Attempts sent to backends, by region and outcome",
            labels=["region", "outcome"],
        )
        for (region, outcome), n in sorted(s.upstream.items()):
            upstream.add_metric([region, outcome], n)
        yield upstream
        live = self.live()
        conns = GaugeMetricFamily("novacron_gateway_connections", "Open client connections")
        conns.add_metric([], live["connections"])
        yield conns
        inflight = GaugeMetricFamily("novacron_gateway_inflight", "Requests being served")
        inflight.add_metric([], live["inflight"])
        yield inflight
        avail = GaugeMetricFamily(
            "novacron_gateway_backend_available",
            "1 when the backend takes new requests (healthy, not ejected, breaker closed)",
            labels=["region", "backend"],
        )
        active = GaugeMetricFamily(
            "novacron_gateway_backend_active", "Requests in flight", labels=["region", "backend"]
        )
        ejections = CounterMetricFamily(
            "novacron_gateway_backend_ejections",
            "Outlier ejections",
            labels=["region", "backend"],
        )
        for b in live["backends"]:
            labels = [b["region"], b["id"]]
            avail.add_metric(labels, 1.0 if b["available"] else 0.0)
            active.add_metric(labels, b["active"])
            ejections.add_metric(labels, b["ejections"])
        yield avail
        yield active
        yield ejections


def registry(collector: GatewayCollector) -> CollectorRegistry:
    reg = CollectorRegistry(auto_describe=False)
    reg.register(collector)
    return reg
