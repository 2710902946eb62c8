"""Metric conventions: names, base units, bounded labels, the region label on every sample."""

from __future__ import annotations

import pytest
from prometheus_client import generate_latest

from novacron_core.observe.metrics import (
    MAX_OPEN_VALUES,
    OTHER,
    ConventionError,
    MetricSet,
    check_name,
    lint_exposition,
    status_class,
)
from novacron_core.runtime.metrics import NodeMetrics


@pytest.mark.parametrize(
    ("name", "kind", "problem"),
    [
        ("raft_term", "gauge", "novacron_<component>"),
        ("novacron_Raft_term", "gauge", "lower snake"),
        ("novacron_http_latency_ms", "histogram", "base units"),
        ("novacron_disk_used_percent", "gauge", "base units"),
        ("novacron_http_requests_total", "counter", "without _total"),
        ("novacron_raft_elections_total", "gauge", "only counters"),
        ("novacron_http_request_duration", "histogram", "_seconds"),
    ],
)
def test_names_breaking_the_conventions_are_refused(name: str, kind: str, problem: str) -> None:
    with pytest.raises(ConventionError, match=problem):
        check_name(name, kind)  # type: ignore[arg-type]


def test_every_sample_carries_the_region_and_labels_stay_bounded() -> None:
    m = MetricSet("eu-west")
    codes = m.counter("novacron_api_calls", "calls", {"code": ("200", "503")})
    peers = m.gauge("novacron_link_up", "per peer", {"peer": None})
    codes.labels("200").inc()
    codes.labels(code="418").inc(2)  # not declared: folded into "other"
    for i in range(MAX_OPEN_VALUES + 10):
        peers.labels(f"p{i}").set(1)
    text = generate_latest(m.registry).decode()
    assert 'novacron_api_calls_total{code="200",region="eu-west"} 1.0' in text
    assert f'novacron_api_calls_total{{code="{OTHER}",region="eu-west"}} 2.0' in text
    peer_series = [line for line in text.splitlines() if line.startswith("novacron_link_up{")]
    assert len(peer_series) == MAX_OPEN_VALUES + 1  # the cap, plus "other"
    assert lint_exposition(text) == []


def test_declaring_the_region_or_unbounded_combinations_is_refused() -> None:
    m = MetricSet("r")
    with pytest.raises(ConventionError, match="region"):
        m.gauge("novacron_x_y", "d", {"region": None})
    with pytest.raises(ConventionError, match="combinations"):
        m.gauge("novacron_x_z", "d", {"a": None, "b": None})


def test_lint_reports_a_sample_without_region() -> None:
    text = "# TYPE novacron_x_y gauge\nnovacron_x_y 1\n"
    assert lint_exposition(text) == ["novacron_x_y: no region label"]


def test_disabled_metrics_are_no_ops() -> None:
    m = NodeMetrics("r", enabled=False)
    m.http.labels("200").inc()
    m.request_seconds.labels("write", "2xx").observe(0.1)
    m.count_elections(3)
    assert generate_latest(m.registry) == b""


def test_node_metrics_count_elections_from_the_machines_total() -> None:
    m = NodeMetrics("r")
    m.count_elections(2)
    m.count_elections(2)
    m.count_elections(5)
    text = generate_latest(m.registry).decode()
    assert 'novacron_raft_elections_total{region="r"} 5.0' in text


def test_status_class() -> None:
    assert [status_class(c) for c in (200, 404, 503, 99)] == ["2xx", "4xx", "5xx", OTHER]
