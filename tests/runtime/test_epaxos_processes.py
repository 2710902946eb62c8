"""Three real ``novacron node --protocol epaxos`` processes on loopback (fsync on).

Every node takes writes (there is no leader); /v1/cluster says so. Then the command leaders
are killed mid-write: clients write through every node while, ten times, one node is
kill -9'ed (its instances in flight), the others recover its instances, and it restarts from
its own disk. The history is checked linearizable, and every acknowledged write is still
there at the end, read through every node."""

from __future__ import annotations

import asyncio
import json
import random
import signal
import time
from collections.abc import Iterator

import aiohttp
import pytest

from novacron_core.sim import History, KVModel, check_linearizable
from tests.runtime.procs import ProcCluster, call
from tests.runtime.test_node_processes import Client

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProcCluster]:
    """One group for the whole file (starting three processes costs seconds on a busy
    machine); the tests use disjoint keys."""
    c = ProcCluster(
        tmp_path_factory.mktemp("epaxos"),
        extra=["--protocol", "epaxos", "--max-inflight-requests", "64", "--fsync"],
    )
    c.start_all()
    try:
        yield c
    finally:
        c.stop_all()


async def test_every_node_takes_writes_and_cluster_status_says_epaxos(
    cluster: ProcCluster,
) -> None:
    async with aiohttp.ClientSession() as http:
        await cluster.all_ready(http)
        for i, n in enumerate(cluster.names):
            status, _ = await call(http, "PUT", f"{cluster.url(n)}/v1/kv/from-{n}", data=b"%d" % i)
            assert status == 200, n
        for i, n in enumerate(cluster.names):
            other = cluster.names[(i + 1) % len(cluster.names)]
            status, body = await call(http, "GET", f"{cluster.url(other)}/v1/kv/from-{n}")
            assert (status, body) == (200, b"%d" % i)
        async with http.get(cluster.url("n2") + "/v1/cluster") as r:
            st = await r.json()
        assert st["protocol"] == "epaxos"
        assert st["leaderless"] is True
        assert st["leader"] is None
        assert st["role"] == "replica"
        assert st["applied"] >= 3
        async with http.post(
            cluster.url("n1") + "/v1/cluster/members",
            json={"action": "add_learner", "node": "n4", "peer": "127.0.0.1:1", "http": "x:1"},
        ) as r:
            assert r.status == 409
            assert "membership changes are not supported" in (await r.json())["detail"]


async def test_command_leader_kill9_ten_times_loses_no_acknowledged_write(
    cluster: ProcCluster,
) -> None:
    h = History()
    stop = asyncio.Event()
    rng = random.Random(7)
    async with aiohttp.ClientSession() as http:
        await cluster.all_ready(http)

        async def run_client(cid: int) -> None:
            cl = Client(cid, cluster, http, h)
            n = 0
            while not stop.is_set():
                n += 1
                key = f"k{cl.rng.randrange(3)}"
                kind = cl.rng.choice(["put", "put", "get", "cas"])
                if kind == "put":
                    await cl.op("put", key, f"c{cid}-{n}")
                elif kind == "get":
                    await cl.op("get", key, None)
                else:
                    await cl.op("cas", key, (f"c{cid}-{n - 1}", f"c{cid}-{n}"))

        clients = [asyncio.create_task(run_client(i)) for i in range(8)]
        started = time.monotonic()
        for _ in range(10):
            await asyncio.sleep(0.4)  # writes in flight through every node
            victim = rng.choice(sorted(cluster.procs))
            cluster.kill9(victim)
            await asyncio.sleep(0.4)  # the survivors take over its instances meanwhile
            cluster.start(victim)
            await cluster.all_ready(http)
        await asyncio.sleep(1.0)
        stop.set()
        await asyncio.gather(*clients)
        # Every acknowledged write must be visible, through every node.
        for n in cluster.names:
            for k in range(3):
                op = h.invoke(99, "get", f"k{k}", None, time.monotonic())
                status, body = 0, b""
                for _ in range(20):
                    status, body = await call(http, "GET", f"{cluster.url(n)}/v1/kv/k{k}")
                    if status in (200, 404):
                        break
                assert status in (200, 404), (n, status, body)
                h.ok(op, body.decode() if status == 200 else None, time.monotonic())
        # the kills did catch instances in flight: someone had to take them over
        recoveries = 0
        for n in cluster.names:
            async with http.get(cluster.url(n) + "/v1/cluster") as r:
                recoveries += (await r.json())["elections"]
        assert recoveries > 0
    elapsed = time.monotonic() - started
    h.close()
    counts = h.counts()
    assert counts.get("ok", 0) > 100, counts
    res = check_linearizable(h, KVModel())
    assert res.ok, f"{res.key}: {res.explanation} (logs in {cluster.root})"
    assert elapsed < 90, elapsed


async def test_a_replica_without_a_quorum_answers_503_not_applied(cluster: ProcCluster) -> None:
    """There is no leader to forward to: the replica itself says it cannot commit."""
    async with aiohttp.ClientSession() as http:
        await cluster.all_ready(http)
        frozen = ["n2", "n3"]
        for n in frozen:
            cluster.procs[n].send_signal(signal.SIGSTOP)
        try:
            status, body = 0, b""
            for _ in range(50):  # until n1 notices it hears no quorum (election timeout)
                async with http.put(cluster.url("n1") + "/v1/kv/alone", data=b"x") as r:
                    status, body = r.status, await r.read()
                    retry_after = r.headers.get("Retry-After")
                if status == 503:
                    break
                await asyncio.sleep(0.2)
            assert status == 503, (status, body)
            assert retry_after == "1"
            problem = json.loads(body)
            assert problem["outcome"] == "not_applied"
            assert "no quorum of replicas reachable" in problem["detail"]
            async with http.get(cluster.url("n1") + "/v1/cluster") as r:
                assert (await r.json())["role"] == "isolated"
        finally:
            for n in frozen:
                cluster.procs[n].send_signal(signal.SIGCONT)
        await cluster.all_ready(http)
        status, _ = await call(http, "PUT", cluster.url("n1") + "/v1/kv/alone", data=b"y")
        assert status == 200
