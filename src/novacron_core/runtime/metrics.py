"""Prometheus metrics of one node (its own registry, so tests can run several nodes)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class NodeMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.term = Gauge("novacron_raft_term", "Current Raft term", registry=r)
        self.commit = Gauge("novacron_raft_commit_index", "Commit index", registry=r)
        self.applied = Gauge("novacron_raft_applied_index", "Applied index", registry=r)
        self.is_leader = Gauge("novacron_raft_is_leader", "1 on the leader", registry=r)
        self.elections = Gauge("novacron_raft_elections", "Elections started", registry=r)
        self.proposals = Counter(
            "novacron_raft_proposals", "Client proposals by outcome", ["status"], registry=r
        )
        self.http = Counter(
            "novacron_http_requests", "HTTP requests by route and code", ["code"], registry=r
        )
        self.fsync_seconds = Histogram(
            "novacron_raft_fsync_seconds",
            "Latency of one group-commit fsync",
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0),
            registry=r,
        )
