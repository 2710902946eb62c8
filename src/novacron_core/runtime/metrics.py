"""Prometheus metrics of one node (its own registry, so tests can run several nodes).

Defined through observe.metrics.MetricSet: base units, bounded labels, and the node's
``region`` label on every sample. ``enabled=False`` (``--no-metrics``) makes every update
a no-op; /metrics then serves an empty page.
"""

from __future__ import annotations

from prometheus_client import ProcessCollector

from novacron_core.observe.metrics import STATUS_CLASSES, MetricSet

# statuses the API answers with (http_api.py); anything else is counted as "other"
HTTP_CODES = ("200", "201", "400", "404", "409", "422", "429", "500", "503", "504")
HTTP_OPS = ("read", "write", "admin")
# request latency buckets (seconds): the write-latency SLO threshold, 0.25 s, is one
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class NodeMetrics:
    def __init__(self, region: str = "local", enabled: bool = True) -> None:
        m = self.set = MetricSet(region, enabled)
        self.registry = m.registry
        if enabled:
            ProcessCollector(registry=self.registry)  # CPU, RSS, open fds per node
        self.term = m.gauge("novacron_raft_term", "Current Raft term")
        self.commit = m.gauge("novacron_raft_commit_index", "Commit index")
        self.applied = m.gauge("novacron_raft_applied_index", "Applied index")
        self.is_leader = m.gauge("novacron_raft_is_leader", "1 on the leader")
        self.elections = m.counter("novacron_raft_elections", "Elections this node started")
        self._elections_seen = 0
        self.proposals = m.counter(
            "novacron_raft_proposals", "Client proposals by outcome", {"status": None}
        )
        self.http = m.counter(
            "novacron_http_requests", "HTTP requests by status code", {"code": HTTP_CODES}
        )
        for code in HTTP_CODES:  # every known code is a series from the start (at 0)
            self.http.labels(code).inc(0)
        self.request_seconds = m.histogram(
            "novacron_http_request_duration_seconds",
            "Latency of HTTP requests by operation (read, write, admin) and status class",
            {"op": HTTP_OPS, "code": STATUS_CLASSES},
            buckets=LATENCY_BUCKETS,
        )
        for op in ("read", "write"):  # the SLO ratios' numerators exist before a first 5xx
            for cls in ("2xx", "4xx", "5xx"):
                self.request_seconds.labels(op, cls)
        self.fsync_seconds = m.histogram(
            "novacron_raft_fsync_seconds",
            "Latency of one group-commit fsync",
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0),
        )

    def count_elections(self, total: int) -> None:
        """Advance the elections counter to the machine's running total."""
        if total > self._elections_seen:
            self.elections.inc(total - self._elections_seen)
            self._elections_seen = total
