"""One VM write is one trace across three regions, in a real Jaeger v2: three real node
processes (one per region, fsync'd storage, the federation file the operator renders), a
client's ``traceparent`` on ``POST /v1/vms`` at home; the trace fetched from Jaeger's query
API holds the home node's server span, its consensus round and the record's publication,
and in each other region the replica applying the update and the conflict engine merging
the copy, each a descendant of the client's span (the carrier rode in the sync messages).
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.runtime.procs import call, free_ports

from .test_jaeger import _tag, fetch_trace, running_jaeger
from .tools import jaeger

pytestmark = pytest.mark.slow
REGIONS = ("east", "west", "north")


def _federation(peer: dict[str, int]) -> dict[str, Any]:
    return {
        "federation": "traced",
        "members": [
            {"name": r, "region": r, "local": True, "endpoints": [f"127.0.0.1:{peer[r]}"]}
            for r in REGIONS
        ],
        "gossip": {"intervalMs": 100, "fanout": 2},
        "antiEntropy": {"intervalSeconds": 1},
    }


def _start(root: Path, region: str, peer: int, http: int, env: dict[str, str]) -> Any:
    node = f"{region}-0"
    cmd = [
        sys.executable,
        "-m",
        "novacron_core.cli",
        "node",
        "--node-id",
        node,
        "--region",
        region,
        "--data-dir",
        str(root / node),
        "--peers",
        f"{node}=127.0.0.1:{peer}/127.0.0.1:{http}",
        "--federation-file",
        str(root / "federation.json"),
        "--federation-poll-s",
        "0.1",
    ]
    log = open(root / f"{node}.log", "ab")  # noqa: SIM115 (the child owns it)
    proc = subprocess.Popen(cmd, stdout=log, stderr=log, env=env)
    log.close()
    return proc


async def _until(what: str, cond: Any, limit: float = 30.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while loop.time() < deadline:
        try:
            if await cond():
                return
        except (aiohttp.ClientError, TimeoutError):
            pass
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


async def test_one_vm_write_is_one_trace_from_the_request_at_home_to_the_merge_in_every_region(
    tmp_path: Path,
) -> None:
    jaeger()  # skips with how to build it when absent
    otlp = free_ports(1)[0]
    ports = free_ports(2 * len(REGIONS))
    peer = {r: ports[2 * i] for i, r in enumerate(REGIONS)}
    http_port = {r: ports[2 * i + 1] for i, r in enumerate(REGIONS)}
    url = {r: f"http://127.0.0.1:{http_port[r]}" for r in REGIONS}
    (tmp_path / "federation.json").write_text(json.dumps(_federation(peer)))
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{otlp}",
        # a client's sampled traceparent decides; nothing else starts a trace
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": "0",
        "OTEL_BSP_SCHEDULE_DELAY": "200",
        "OTEL_EXPORTER_OTLP_TIMEOUT": "2",
    }
    procs: list[subprocess.Popen[bytes]] = []
    with running_jaeger(tmp_path, otlp) as base:
        try:
            for r in REGIONS:
                procs.append(_start(tmp_path, r, peer[r], http_port[r], env))
            async with aiohttp.ClientSession() as http:
                for r in REGIONS:

                    async def federated(r: str = r) -> bool:
                        async with http.get(url[r] + "/readyz") as resp:
                            if resp.status != 200:
                                return False
                        async with http.get(url[r] + "/v1/federation/status") as resp:
                            return resp.status == 200 and bool((await resp.json()).get("member"))

                    await _until(f"{r} ready and federated", federated)
                trace_id, parent = secrets.token_hex(16), secrets.token_hex(8)
                headers = {"traceparent": f"00-{trace_id}-{parent}-01"}
                vm = {
                    "id": "t-1",
                    "name": "t-1",
                    "spec": {"cpus": 1, "memory_mib": 512, "image": "x"},
                }
                st, body = await call(
                    http, "POST", url["east"] + "/v1/vms", json=vm, headers=headers
                )
                assert st == 201, body
                # an untraced write afterwards: sampling ratio 0, so no trace of its own
                st, body = await call(
                    http, "POST", url["east"] + "/v1/vms", json={**vm, "id": "u-1", "name": "u-1"}
                )
                assert st == 201, body
                for r in ("west", "north"):

                    async def replicated(r: str = r) -> bool:
                        async with http.get(url[r] + "/v1/federation/vms/u-1") as resp:
                            return resp.status == 200

                    await _until(f"the untraced VM in {r}", replicated)
                spans = await asyncio.to_thread(
                    fetch_trace, base, trace_id, 7, 30, lambda got: _named(got) >= _NEEDED
                )
                await asyncio.sleep(1.0)  # whatever else the nodes export lands meanwhile
                spans = await asyncio.to_thread(fetch_trace, base, trace_id, len(spans))
                services = await asyncio.to_thread(_operations, base)
        finally:
            for p in procs:
                p.send_signal(signal.SIGTERM)
            for p in procs:
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
    by_id = {s["spanID"]: s for s in spans}

    def region(s: dict[str, Any]) -> str:
        return str(_tag(s["process"], "novacron.region"))

    def ancestors(s: dict[str, Any]) -> list[str]:
        out = []
        while s["references"]:
            ref = s["references"][0]["spanID"]
            out.append(ref)
            if ref not in by_id:
                break
            s = by_id[ref]
        return out

    named = _named(spans)
    assert named >= _NEEDED, named
    assert {region(s) for s in spans} == set(REGIONS)
    # one tree: every span descends from the client's span, through the home region's
    for s in spans:
        chain = ancestors(s)
        assert chain[-1] == parent, (s["operationName"], region(s), chain)
    (publish,) = [s for s in spans if s["operationName"] == "federation.publish"]
    for s in spans:
        if s["operationName"] == "conflict.merge" and region(s) != "east":
            assert publish["spanID"] in ancestors(s)
            assert _tag(s, "novacron.key") == "vm/t-1@east"
    # the untraced write made no spans anywhere (sampling ratio 0, no client context)
    assert services == 1, services


# the spans one traced VM write must leave: at home, then in each other region
_NEEDED = {
    ("east", "POST /v1/vms"),
    ("east", "consensus.propose"),
    ("east", "federation.publish"),
    *((r, op) for r in ("west", "north") for op in ("sync.apply", "conflict.merge")),
}


def _named(spans: list[dict[str, Any]]) -> set[tuple[str, str]]:
    """(region, operation) of each span: each region's node exports on its own schedule."""
    return {(str(_tag(s["process"], "novacron.region")), s["operationName"]) for s in spans}


def _operations(base: str) -> int:
    """How many traces Jaeger holds for the nodes' service."""
    import urllib.request

    with urllib.request.urlopen(f"{base}/api/traces?service=novacron-node&limit=100") as r:
        return len(json.loads(r.read())["data"])
