"""A bootstrap member loses its volume after the group formed, against real processes.

Restarted on an empty data dir with ``--initial-cluster-state existing`` it must not
bootstrap again as a voter: it reports ``rejoining``, grants no vote (with the leader dead,
the other survivor and it elect nobody: unavailable, which is the safe outcome), still
replicates, and becomes a voter again only through member replace: removed, added back as
a learner, promoted. It then holds every write acknowledged before and after the loss."""

from __future__ import annotations

import asyncio
import shutil
import signal
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from novacron_core.runtime.node import REJOINING_MARKER
from tests.runtime.procs import ProcCluster, call
from tests.runtime.test_membership import _member, _status, _until

pytestmark = pytest.mark.slow
# Small snapshots: the wiped node learns the old configuration (no config entry is in the
# log: the bootstrap config is implicit) from the snapshot the leader sends it.
FAST = ["--election-timeout-ms", "150", "--heartbeat-ms", "30", "--snapshot-entries", "8"]


async def _put(http: aiohttp.ClientSession, url: str, key: str) -> None:
    status, body = await call(http, "PUT", f"{url}/v1/kv/{key}", data=key.encode())
    assert status == 200, (key, status, body)


async def test_a_member_that_lost_its_disk_abstains_until_replaced(tmp_path: Path) -> None:
    c = ProcCluster(tmp_path, extra=FAST)
    c.start_all()
    try:
        async with aiohttp.ClientSession() as http:
            await c.all_ready(http)
            a = await c.leader(http)
            b, lost = (n for n in c.names if n != a)
            written = [f"before-{i}" for i in range(20)]
            for k in written:
                await _put(http, c.url(a), k)

            # The volume is lost: stop the node, wipe its data dir, start it as the operator
            # does once the group formed.
            p = c.procs.pop(lost)
            p.send_signal(signal.SIGTERM)
            p.wait(10)
            shutil.rmtree(tmp_path / lost)
            c.extra = [*FAST, "--initial-cluster-state", "existing"]
            c.start(lost)
            st = await _until("the wiped node answers", lambda: _status(http, c.url(lost)))
            assert st["rejoining"] is True
            assert (tmp_path / lost / REJOINING_MARKER).exists()
            async with http.get(c.url(lost) + "/readyz") as r:
                assert r.status == 503
                assert (await r.json())["rejoining"] is True
            log_text = (tmp_path / f"{lost}.log").read_text()
            assert "not voting until replaced" in log_text

            for k in (more := [f"during-{i}" for i in range(10)]):
                await _put(http, c.url(a), k)
            written += more

            # The leader dies: the survivor needs the wiped node's vote, which it refuses.
            c.kill9(a)
            loop = asyncio.get_running_loop()
            until = loop.time() + 2.0  # >10 election timeouts
            while loop.time() < until:
                for n in (b, lost):
                    st = await _status(http, c.url(n))
                    assert st["role"] != "leader", (n, st)
                await asyncio.sleep(0.05)
            st = await _status(http, c.url(lost))
            assert (st["role"], st["rejoining"]) == ("follower", True)

            c.start(a)
            lead = await c.leader(http)
            assert lead in (a, b)

            async def replicated() -> bool:
                mine = await _status(http, c.url(lost))
                theirs = await _status(http, c.url(lead))
                return bool(mine["rejoining"] and mine["applied"] >= theirs["commit"] > 0)

            await _until("the rejoining node replicates while abstaining", replicated)
            st = await _status(http, c.url(lost))
            # It learned the old config, which lists it as a voter, and still abstains.
            assert (lost in st["voters"], st["rejoining"], st["role"]) == (True, True, "follower")

            # Member replace, through the leader as the operator does.
            addrs = {
                "peer": f"127.0.0.1:{c.peer_ports[lost]}",
                "http": f"127.0.0.1:{c.http_ports[lost]}",
            }
            status, body = await _member(http, c.url(lead), action="remove", node=lost)
            assert status == 200, body
            assert lost not in body["voters"]
            status, body = await _member(
                http, c.url(lead), action="add_learner", node=lost, **addrs
            )
            assert status == 200, body
            assert body["learners"] == [lost]

            async def rejoined() -> Any:
                mine = await _status(http, c.url(lost))
                theirs = await _status(http, c.url(lead))
                ok = not mine["rejoining"] and mine["applied"] >= theirs["commit"]
                return ok and mine

            st = await _until("the node leaves rejoining as a learner", rejoined)
            assert st["learners"] == [lost]
            assert not (tmp_path / lost / REJOINING_MARKER).exists()
            status, body = await _member(http, c.url(lead), action="promote", node=lost)
            assert status == 200, body
            assert body["voters"] == sorted(c.names)

            # It holds every acknowledged write: make it the leader and read them from it.
            async def leads() -> bool:
                await call(
                    http, "POST", c.url(lead) + "/v1/cluster/transfer", json={"target": lost}
                )
                await asyncio.sleep(0.3)
                return bool((await _status(http, c.url(lost)))["role"] == "leader")

            await _until("the replaced node takes the lead", leads, limit_s=10)
            for k in written:
                status, got = await call(http, "GET", f"{c.url(lost)}/v1/kv/{k}")
                assert (status, got) == (200, k.encode()), k
            async with http.get(c.url(lost) + "/readyz") as r:
                assert r.status == 200
    finally:
        c.stop_all()
