"""Real ``novacron node --protocol eventual`` processes on loopback: every replica answers a
write alone, says the reply is eventual, and the others converge; a write acknowledged just
before a kill -9 is on the replica's disk when it comes back, and reaches the others."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.runtime.procs import ProcCluster, call

pytestmark = pytest.mark.slow


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[ProcCluster]:
    c = ProcCluster(tmp_path, extra=["--protocol", "eventual"])
    c.start_all()
    try:
        yield c
    finally:
        c.stop_all()


async def _converged(http: aiohttp.ClientSession, c: ProcCluster, key: str, want: bytes) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10.0
    while loop.time() < deadline:
        got = []
        for n in c.names:
            status, body = await call(http, "GET", c.url(n) + f"/v1/kv/{key}")
            got.append(body if status == 200 else None)
        if all(g == want for g in got):
            return True
        await asyncio.sleep(0.1)
    return False


async def test_each_replica_answers_alone_and_the_others_converge(cluster: ProcCluster) -> None:
    async with aiohttp.ClientSession() as http:
        await cluster.all_ready(http)
        async with http.put(cluster.url("n1") + "/v1/kv/a", data=b"1") as r:
            assert r.status == 200
            assert r.headers["X-Novacron-Consistency"] == "eventual"
        async with http.put(cluster.url("n3") + "/v1/kv/b", data=b"2") as r:
            assert r.status == 200
        assert await _converged(http, cluster, "a", b"1")
        assert await _converged(http, cluster, "b", b"2")
        async with http.get(cluster.url("n2") + "/v1/cluster") as r:
            st = await r.json()
        assert (st["protocol"], st["consistency"], st["leader"]) == ("eventual", "eventual", "n2")
        async with http.post(
            cluster.url("n2") + "/v1/cluster/members", json={"action": "remove", "node": "n3"}
        ) as r:
            assert r.status == 409  # refused, saying so
            assert "not supported" in (await r.json())["detail"]
        # Acknowledged, then killed at once: the write was fsynced before the answer.
        async with http.put(cluster.url("n2") + "/v1/kv/c", data=b"3") as r:
            assert r.status == 200
        cluster.kill9("n2")
        cluster.start("n2")
        await cluster.all_ready(http)
        assert await _converged(http, cluster, "c", b"3")
