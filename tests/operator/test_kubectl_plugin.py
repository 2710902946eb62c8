"""kubectl novacron without a cluster: what it says when it cannot act, and its tables.
(Against real pods: e2e/test_real_pods.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from novacron_operator.plugin.cli import _seconds, main, pod_table, region_table
from novacron_operator.plugin.cluster import NodeView
from rich.console import Console


@pytest.mark.parametrize("cmd", ["fence", "unfence"])
def test_fence_is_not_a_silent_no_op(cmd: str) -> None:
    out = CliRunner().invoke(main, [cmd, "us-east", "-n", "x"])
    assert out.exit_code == 2
    assert "not available yet" in out.output
    assert "Nothing was changed" in out.output


def test_without_a_kubeconfig_it_says_so(tmp_path: Path) -> None:
    out = CliRunner().invoke(main, ["status", "--kubeconfig", str(tmp_path / "missing")])
    assert out.exit_code == 1
    assert "error: no usable kubeconfig" in out.output


def test_durations() -> None:
    assert _seconds("30s") == 30
    assert _seconds("10m") == 600
    assert _seconds("2h") == 7200
    assert _seconds("45") == 45
    assert _seconds(None) is None
    with pytest.raises(Exception, match="duration"):
        _seconds("soon")


def render(table: object) -> str:
    console = Console(width=200, record=True)
    console.print(table)
    return console.export_text()


def test_pod_table_shows_lag_behind_the_highest_commit() -> None:
    views = [
        NodeView("r-0", "Running", True, 0, "n", "leader", 3, "r-0", 120, 120),
        NodeView("r-1", "Running", True, 1, "n", "follower", 3, "r-0", 118, 100),
        NodeView("r-2", "Pending", False, 0, "", error="not running"),
    ]
    lines = {
        ln.split()[0]: ln.split() for ln in render(pod_table(views)).splitlines() if ln.strip()
    }
    assert lines["r-0"][3:9] == ["leader", "3", "r-0", "120", "120", "0"]
    assert lines["r-1"][3:9] == ["follower", "3", "r-0", "118", "100", "20"]
    assert "running)" in " ".join(lines["r-2"])


def test_region_table_shows_conditions_and_why_not_ready() -> None:
    region = {
        "metadata": {"name": "us-east", "namespace": "prod"},
        "spec": {"replicas": 3},
        "status": {
            "readyReplicas": 2,
            "leader": "us-east-1",
            "term": 7,
            "commitIndex": 42,
            "conditions": [
                {"type": "Ready", "status": "False", "message": "2/3 nodes ready"},
                {"type": "Degraded", "status": "False"},
            ],
        },
    }
    text = render(region_table([region], all_ns=True))
    row = next(ln for ln in text.splitlines() if "us-east" in ln).split()
    assert row[:6] == ["prod", "us-east", "2/3", "us-east-1", "7", "42"]
    assert "Ready=False,Degraded=False" in text
    assert "2/3 nodes ready" in text


def test_region_table_shows_the_health_score_and_burn_rates_from_status() -> None:
    slos = [
        {"name": "availability", "objective": 0.999, "burnRate1h": 14.4},
        {"name": "write_latency", "objective": 0.99, "burnRate5m": 0.0},  # no 1h figure yet
    ]
    region = {
        "metadata": {"name": "us-east", "namespace": "prod"},
        "spec": {"replicas": 3},
        "status": {"leader": "us-east-0", "health": {"score": 87.4, "node": "n", "slos": slos}},
    }
    text = render(region_table([region, {**region, "status": {}}], all_ns=False))
    rows = [ln.split() for ln in text.splitlines() if "us-east" in ln and "REGION" not in ln]
    assert rows[0][5:8] == ["87", "availability", "14.40"]
    assert "write_latency" not in text
    assert rows[1][4:7] == ["-", "-", "-"]  # no status: commit, health, burn unknown
