"""``novacron status`` and ``novacron vms`` against a real 3-node group."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
from click.testing import CliRunner

from novacron_core.cli import main
from novacron_core.client import NodeClient, NodeUnreachable
from tests.runtime.procs import ProcCluster, free_ports

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def group(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProcCluster]:
    c = ProcCluster(tmp_path_factory.mktemp("cli"), extra=["--region", "us-east1"])
    c.start_all()
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                st = NodeClient(c.url("n1"), timeout=0.5).call("GET", "/v1/cluster")
                if st.get("leader"):
                    break
            except (NodeUnreachable, Exception):
                pass
            assert time.monotonic() < deadline, "no leader"
            time.sleep(0.1)
        yield c
    finally:
        c.stop_all()


def _cli(*args: str) -> tuple[int, str]:
    res = CliRunner().invoke(main, list(args))
    return res.exit_code, res.output


def test_vms_create_power_list_get_delete_round_trip_through_a_follower(
    group: ProcCluster,
) -> None:
    urls = ["--url", group.url("n2"), "--url", group.url("n3")]
    code, out = _cli("vms", "create", "db-1", "--cpus", "4", *urls, "--json")
    assert code == 0, out
    created = json.loads(out)
    assert created["home_region"] == "us-east1"
    assert created["name"] == "db-1"
    code, out = _cli("vms", "power", "db-1", "on", *urls, "--json")
    assert code == 0, out
    assert json.loads(out)["power"] == "on"
    code, out = _cli("vms", "list", *urls, "--json")
    assert code == 0, out
    assert [(v["id"], v["power"], v["spec"]["cpus"]) for v in json.loads(out)] == [
        ("db-1", "on", 4)
    ]
    code, out = _cli("vms", "get", "db-1", *urls)
    assert code == 0, out
    assert "db-1" in out
    assert "us-east1" in out
    code, out = _cli("vms", "delete", "db-1", *urls)
    assert code == 0, out
    code, out = _cli("vms", "get", "db-1", *urls)
    assert code != 0
    assert "404" in out


def test_status_shows_role_term_and_commit_of_each_node(group: ProcCluster) -> None:
    urls = ("--url", group.url("n1"), "--url", group.url("n2"))
    deadline = time.monotonic() + 10
    while True:  # (a follower learns the leader's commit index on its next heartbeat)
        code, out = _cli("status", *urls, "--json")
        assert code == 0, out
        rows = json.loads(out)
        settled = all("error" not in r and r["commit"] >= 1 for r in rows)
        if settled or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert {r.get("id") for r in rows} == {"n1", "n2"}, rows
    assert all(r["role"] in ("leader", "follower") and r["commit"] >= 1 for r in rows), rows
    assert len({r["leader"] for r in rows}) == 1, rows
    # each node's own health score (GET /v1/observe/health) once it has sampled (~5 s)
    deadline = time.monotonic() + 20
    while not all(r.get("health") is not None for r in rows) and time.monotonic() < deadline:
        time.sleep(0.5)
        rows = json.loads(_cli("status", *urls, "--json")[1])
    assert all(50 <= r["health"] <= 100 for r in rows), rows  # a healthy group scores high
    code, out = _cli("status", *urls)
    assert code == 0, out
    assert "slo_burn_1h" in out, out
    assert f"{rows[0]['health']}" in out, out


def test_status_stands_without_the_observe_api(group: ProcCluster) -> None:
    # an older node (no /v1/observe/health): the row stands, its health cell is empty
    from novacron_core import client_cli

    assert client_cli._node_health(group.url("n1") + "/no-such-prefix") == {}


def test_an_unreachable_node_is_a_clear_error() -> None:
    (port,) = free_ports(1)
    code, out = _cli("vms", "list", "--url", f"http://127.0.0.1:{port}")
    assert code != 0
    assert "no node answered" in out
    assert "novacron demo --interactive" in out
