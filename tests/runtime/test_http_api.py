"""The HTTP API against a real 3-node cluster: validation, proxying, VM lifecycle, admin."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.runtime.procs import ProcCluster, call

pytestmark = pytest.mark.slow


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[ProcCluster]:
    c = ProcCluster(tmp_path, size=3)
    c.start_all()
    try:
        yield c
    finally:
        c.stop_all()


async def test_vm_lifecycle_through_a_follower(cluster: ProcCluster) -> None:
    async with aiohttp.ClientSession() as http:
        lead = await cluster.leader(http)
        follower = next(n for n in cluster.names if n != lead)
        await cluster.follows(http, follower, lead)
        f = cluster.url(follower)  # proxied to the leader
        vm = {"id": "web-1", "name": "web", "spec": {"cpus": 2, "memory_mib": 2048, "image": "u"}}
        status, body = await call(http, "POST", f + "/v1/vms", json=vm)
        assert status == 201, body
        assert json.loads(body)["version"] == 1
        status, _ = await call(http, "POST", f + "/v1/vms", json=vm)
        assert status == 409
        status, _ = await call(http, "POST", f + "/v1/vms/web-1/power", json={"state": "on"})
        assert status == 200
        spec = {"cpus": 4, "memory_mib": 4096, "image": "u2"}
        status, body = await call(http, "PUT", f + "/v1/vms/web-1/spec", json=spec)
        got = json.loads(body)
        assert (got["power"], got["spec"]["cpus"], got["version"]) == ("on", 4, 3)
        status, body = await call(http, "GET", cluster.url(lead) + "/v1/vms")
        assert [v["id"] for v in json.loads(body)["vms"]] == ["web-1"]
        status, _ = await call(http, "DELETE", f + "/v1/vms/web-1")
        assert status == 200
        status, _ = await call(http, "GET", f + "/v1/vms/web-1")
        assert status == 404


async def test_invalid_input_names_the_field(cluster: ProcCluster) -> None:
    async with aiohttp.ClientSession() as http:
        u = cluster.url(await cluster.leader(http))
        bad = {"id": "x", "name": "x", "spec": {"cpus": 0, "memory_mib": 2048, "image": "u"}}
        status, body = await call(http, "POST", u + "/v1/vms", json=bad)
        assert status == 422
        assert json.loads(body)["errors"][0]["field"] == "spec.cpus"
        status, _ = await call(http, "POST", u + "/v1/vms", data=b"{not json")
        assert status == 400
        status, _ = await call(http, "POST", u + "/v1/vms/x/power", json={"state": "maybe"})
        assert status == 422
        status, body = await call(http, "POST", u + "/v1/cas/k", json={"expected": None})
        assert status == 422
        assert json.loads(body)["field"] == "value"


async def test_admin_reports_cluster_and_transfers_leadership(cluster: ProcCluster) -> None:
    async with aiohttp.ClientSession() as http:
        lead = await cluster.leader(http)
        async with http.get(cluster.url(lead) + "/v1/cluster") as r:
            st = await r.json()
            assert (st["leader"], st["voters"]) == (lead, ["n1", "n2", "n3"])
        target = next(n for n in cluster.names if n != lead)
        async with http.post(cluster.url(lead) + "/v1/cluster/transfer", json={"target": target}):
            pass
        assert await _wait_leader_is(cluster, http, target)
        async with http.get(cluster.url(target) + "/readyz") as r:
            assert r.status == 200
        async with http.get(cluster.url(target) + "/metrics") as r:
            assert 'novacron_raft_is_leader{region="local"} 1.0' in await r.text()


async def test_no_quorum_answers_503_with_retry_after(cluster: ProcCluster) -> None:
    async with aiohttp.ClientSession() as http:
        lead = await cluster.leader(http)
        for n in cluster.names:
            if n != lead:
                cluster.kill9(n)
        timeout = aiohttp.ClientTimeout(total=15)
        # The leader steps down (CheckQuorum); writes are then refused, not queued forever.
        for _ in range(20):
            async with http.put(cluster.url(lead) + "/v1/kv/a", data=b"1", timeout=timeout) as r:
                if r.status == 503:
                    assert "Retry-After" in r.headers
                    return
        raise AssertionError("never answered 503 without a quorum")


async def _wait_leader_is(c: ProcCluster, http: aiohttp.ClientSession, want: str) -> bool:
    for _ in range(100):
        if await c.leader(http) == want:
            return True
        await asyncio.sleep(0.05)
    return False


async def test_a_follower_stops_waiting_on_a_hung_leader_once_another_is_elected(
    cluster: ProcCluster,
) -> None:
    # A frozen leader keeps its sockets open: nothing but the election timeout tells the
    # followers. A write proxied to it answers "outcome unknown" when the follower's view
    # of the leader changes, instead of holding the client for the request timeout (5 s).
    async with aiohttp.ClientSession() as http:
        await cluster.all_ready(http)
        lead = await cluster.leader(http)
        follower = next(n for n in cluster.names if n != lead)
        proc = cluster.procs[lead]
        proc.send_signal(signal.SIGSTOP)
        try:
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            timeout = aiohttp.ClientTimeout(total=10)
            async with http.put(
                cluster.url(follower) + "/v1/kv/hung", data=b"1", timeout=timeout
            ) as r:
                status = r.status
            took = loop.time() - t0
            assert status in (503, 504), status
            assert took < 2.5, took
            status, _ = await call(http, "PUT", cluster.url(follower) + "/v1/kv/hung", data=b"2")
            assert status == 200
        finally:
            proc.send_signal(signal.SIGCONT)
