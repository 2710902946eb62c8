"""Day-2 membership against real node processes, the way the Kubernetes operator does it:
every pod gets the bootstrap member list and its own id; a pod outside that list starts as
an empty joiner, is added as a learner with its addresses, catches up, is promoted, serves,
and is removed. Addresses travel in the replicated configuration, so nothing restarts."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.runtime.procs import ProcCluster, call, free_ports

pytestmark = pytest.mark.slow
NODE = [sys.executable, "-m", "novacron_core.runtime.node_cli"]


def _spawn(argv: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    with open(log_path, "ab") as log:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(argv, stdout=log, stderr=log, env=env)


async def _status(http: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    async with http.get(url + "/v1/cluster", timeout=aiohttp.ClientTimeout(total=2)) as r:
        doc: dict[str, Any] = await r.json()
        return doc


async def _until(what: str, check: Any, limit_s: float = 20.0) -> Any:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit_s
    last: Any = None
    while loop.time() < deadline:
        try:
            last = await check()
            if last:
                return last
        except (aiohttp.ClientError, TimeoutError) as e:
            last = repr(e)
        await asyncio.sleep(0.1)
    raise AssertionError(f"{what}: not within {limit_s}s (last: {last})")


async def _member(session: aiohttp.ClientSession, url: str, **body: str) -> tuple[int, Any]:
    status, raw = await call(session, "POST", url + "/v1/cluster/members", json=body)
    return status, json.loads(raw) if raw else None


async def test_a_pod_outside_the_bootstrap_list_joins_serves_and_leaves(tmp_path: Path) -> None:
    c = ProcCluster(tmp_path)
    c.start_all()
    try:
        async with aiohttp.ClientSession() as http:
            await c.all_ready(http)
            # The 4th pod: the operator's node.json (bootstrap peers as a JSON list) and env.
            peer_port, http_port = free_ports(2)
            cfg = tmp_path / "n4.json"
            cfg.write_text(json.dumps({"peers": c.peers.split(","), "data_dir": str(tmp_path)}))
            env = {
                **os.environ,
                "PYTHONUNBUFFERED": "1",
                "NOVACRON_NODE_ID": "n4",
                "NOVACRON_DATA_DIR": str(tmp_path / "n4"),
                "NOVACRON_PEER_LISTEN": f"0.0.0.0:{peer_port}",
                "NOVACRON_HTTP_LISTEN": f"0.0.0.0:{http_port}",
            }
            c.procs["n4"] = _spawn([*NODE, "--config", str(cfg)], env, tmp_path / "n4.log")
            c.http_ports["n4"] = http_port
            n4 = c.url("n4")
            joiner = await _until("n4 answers", lambda: _status(http, n4))
            assert (joiner["voters"], joiner["learners"], joiner["role"]) == ([], [], "follower")

            lead = await c.leader(http)
            follower = c.url(next(n for n in c.names if n != lead))
            status, body = await _member(http, follower, action="add_learner", node="n4")
            assert (status, body["field"]) == (422, "peer")

            addrs = {"peer": f"127.0.0.1:{peer_port}", "http": f"127.0.0.1:{http_port}"}
            # Through a follower: proxied to the leader, answered with the cluster status.
            status, body = await _member(http, follower, action="add_learner", node="n4", **addrs)
            assert status == 200, body
            assert body["learners"] == ["n4"]
            assert body["voters"] == ["n1", "n2", "n3"]
            assert body["peers"]["n4"] == addrs
            assert set(body) >= {"id", "role", "term", "leader", "commit", "applied"}

            async def caught_up() -> bool:
                st = await _status(http, n4)
                lst = await _status(http, c.url(lead))
                return bool(
                    st["learners"] == ["n4"]
                    and st["applied"] >= lst["commit"]
                    and set(st["peers"]) == {"n1", "n2", "n3", "n4"}
                )

            await _until("n4 caught up, knowing every member's address", caught_up)
            status, body = await _member(http, c.url(lead), action="promote", node="n4")
            assert status == 200, body
            assert body["voters"] == ["n1", "n2", "n3", "n4"]

            status, _ = await call(http, "PUT", n4 + "/v1/kv/joined", data=b"yes")
            assert status == 200
            status, got = await call(http, "GET", n4 + "/v1/kv/joined")
            assert (status, got) == (200, b"yes")
            for n in c.names:
                st = await _status(http, c.url(n))
                assert st["peers"]["n4"] == addrs, (n, st)

            # Through the leader, as the operator does: n4 may never hear of its own removal
            # (the leader stops replicating to it at once), so a request proxied through n4
            # may well answer 504 once n4 loses sight of the leader.
            lead = await c.leader(http)
            status, body = await _member(http, c.url(lead), action="remove", node="n4")
            assert status == 200, body
            assert body["voters"] == ["n1", "n2", "n3"]

            async def forgotten() -> bool:
                docs = [await _status(http, c.url(n)) for n in c.names]
                return all("n4" not in d["peers"] and "n4" not in d["voters"] for d in docs)

            await _until("every member forgot n4's address", forgotten)
            status, _ = await call(http, "PUT", c.url(lead) + "/v1/kv/after", data=b"1")
            assert status == 200
    finally:
        c.stop_all()


def test_a_joiner_without_listen_addresses_says_what_it_needs(tmp_path: Path) -> None:
    peers = "a-0=127.0.0.1:1/127.0.0.1:2"
    argv = [*NODE, "--node-id", "a-5", "--data-dir", str(tmp_path), "--peers", peers]
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOVACRON_")}
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode != 0
    assert "joiner" in proc.stderr
    assert "--peer-listen and --http-listen" in proc.stderr
