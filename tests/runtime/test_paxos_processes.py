"""Real ``novacron node --protocol multi-paxos`` processes on loopback: kill -9 of the
leader mid-write ten times (the history stays linearizable and no acknowledged write is
lost), /v1/cluster says which protocol runs, and a quorum Raft cannot honour stops a node
at start with a message naming it."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.runtime.procs import ProcCluster, call
from tests.runtime.test_node_processes import leader_kills

pytestmark = pytest.mark.slow


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[ProcCluster]:
    c = ProcCluster(tmp_path, extra=["--protocol", "multi-paxos", "--max-inflight-requests", "64"])
    c.start_all()
    try:
        yield c
    finally:
        c.stop_all()


async def test_multi_paxos_names_itself_and_survives_ten_leader_kills(
    cluster: ProcCluster,
) -> None:
    async with aiohttp.ClientSession() as http:
        lead = await cluster.leader(http)
        follower = next(n for n in cluster.names if n != lead)
        status, _ = await call(http, "PUT", cluster.url(follower) + "/v1/kv/x", data=b"1")
        assert status == 200  # proxied to the leader
        async with http.get(cluster.url(follower) + "/v1/cluster") as r:
            st = await r.json()
            assert r.headers["X-Novacron-Consistency"] == "linearizable"
        assert (st["protocol"], st["leader"], st["consistency"]) == (
            "multi-paxos",
            lead,
            "linearizable",
        )
        assert st["quorum"] == "majority (2 of 3)"
        assert st["term"] >= 1  # the leader's ballot round
    await leader_kills(cluster)


def test_a_quorum_raft_cannot_honour_stops_the_node_naming_it(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "novacron_core.runtime.node_cli", "--node-id", "n1"]
    argv += ["--data-dir", str(tmp_path), "--peers", "n1=127.0.0.1:1/127.0.0.1:2,n2=127.0.0.1:3"]
    proc = subprocess.run(
        [*argv, "--quorum", "flexible:q2=1"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2
    assert "raft decides by majorities only" in proc.stderr
    proc = subprocess.run(
        [*argv, "--protocol", "multi-paxos", "--quorum", "flexible:q1=1,q2=1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    assert "quorum: flexible quorums do not intersect: |Q1| 1 + |Q2| 1 = 2" in proc.stderr
