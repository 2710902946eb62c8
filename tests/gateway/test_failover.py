"""Failover with real processes: three regions of ``novacron node`` processes (fsync on;
the home region us-east1 has three, the other two one each, to keep the test light)
behind a real ``novacron gateway``, clients creating and reading VMs through it; kill -9
the leader of the home region, then the whole home region.

The policy (docs/gateway.md) allows exactly these client errors:

- a create that was in flight at a kill, answered 502/504 "outcome unknown" (it may have
  been applied: the gateway never re-sends it);
- from the home region's death on, a read of a VM homed there, answered "not applied":
  503 once no node of the region is left, or 502 for a read whose every attempt broke off
  as the region's nodes died under it (its home group is gone and plain nodes hold no
  replica of another region; the federated node will answer these from its replica).

Everything else must succeed: reads in flight are retried on another node, creates during
the election are retried on "no leader" until the new leader takes them, creates after the
region's death spill over to the next region (us-west1, the nearest). And the time from a
kill to the last request the gateway sent to the dead backend is asserted.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.runtime.procs import ProcCluster, free_ports

pytestmark = pytest.mark.slow
REGIONS = {"us-east1": 3, "us-west1": 1, "europe-west1": 1}
WORKERS = 12
# the last request to a dead backend must come this soon after the kill (a shared, busy
# machine; the benchmark measures the real distribution, target < 100 ms)
CUTOFF_S = 1.0


@dataclass
class Op:
    kind: str
    vm: str
    t0: float
    t1: float
    status: int
    outcome: str
    backend: str
    home: str


@dataclass
class Fed:
    regions: dict[str, ProcCluster]
    gw: asyncio.subprocess.Process
    url: str
    admin: str
    log: Path


@contextlib.asynccontextmanager
async def federation(root: Path) -> AsyncIterator[Fed]:
    regions = {r: ProcCluster(root / r, n, ["--region", r]) for r, n in REGIONS.items()}
    gw: asyncio.subprocess.Process | None = None
    try:
        for c in regions.values():
            c.root.mkdir(parents=True)
            c.start_all()
        port, admin = free_ports(2)
        seeds = [a for r, c in regions.items() for a in ("--seed", f"{r}={c.url('n1')[7:]}")]
        log = root / "gateway.log"
        with open(log, "wb") as out:  # noqa: ASYNC230 (a local file, once)
            gw = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "novacron_core.cli",
                "gateway",
                "--listen",
                f"127.0.0.1:{port}",
                "--admin-listen",
                f"127.0.0.1:{admin}",
                "--region",
                "us-east1",
                *seeds,
                stdout=out,
                stderr=out,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        yield Fed(regions, gw, f"http://127.0.0.1:{port}", f"http://127.0.0.1:{admin}", log)
    finally:
        if gw is not None and gw.returncode is None:
            gw.terminate()
            try:
                await asyncio.wait_for(gw.wait(), 10)
            except TimeoutError:
                gw.kill()
                await gw.wait()
        for c in regions.values():
            c.stop_all()


async def backends(http: aiohttp.ClientSession, fed: Fed) -> dict[str, Any]:
    async with http.get(fed.admin + "/v1/backends") as r:
        return dict(await r.json())


async def wait_ready(http: aiohttp.ClientSession, fed: Fed) -> None:
    for c in fed.regions.values():
        await c.all_ready(http, limit_s=120)  # generous: a busy machine starts slowly
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with contextlib.suppress(aiohttp.ClientError):
            doc = await backends(http, fed)
            if all(
                doc["regions"].get(r, {}).get("available") == n for r, n in REGIONS.items()
            ) and all(doc["leaders"].get(r) for r in REGIONS):
                return
        await asyncio.sleep(0.1)
    raise AssertionError(f"gateway never saw every region ready; log: {fed.log}")


async def load(http: aiohttp.ClientSession, fed: Fed, stop: asyncio.Event, ops: list[Op]) -> None:
    spec = {"cpus": 1, "memory_mib": 256, "image": "debian-12"}

    async def call(kind: str, vm: str, method: str, path: str, **kw: Any) -> Op:
        t0 = time.monotonic()
        async with http.request(method, fed.url + path, **kw) as r:
            body = await r.json(content_type=None)
            home = body.get("home_region", "") if isinstance(body, dict) else ""
            outcome = r.headers.get("X-Novacron-Outcome", "")
            op = Op(
                kind,
                vm,
                t0,
                time.monotonic(),
                r.status,
                outcome,
                r.headers.get("X-Novacron-Backend", ""),
                home,
            )
        ops.append(op)
        return op

    async def worker(w: int) -> None:
        n = 0
        homes: dict[str, str] = {}
        while not stop.is_set():
            vm = f"w{w}-{n}"
            n += 1
            made = await call(
                "create", vm, "POST", "/v1/vms", json={"id": vm, "name": vm, "spec": spec}
            )
            if made.status == 201:
                homes[vm] = made.home
                got = await call("read", vm, "GET", f"/v1/vms/{vm}")
                got.home = homes[vm]

    await asyncio.gather(*(worker(w) for w in range(WORKERS)))


async def test_a_node_then_a_region_killed_under_load(tmp_path: Path) -> None:
    timeout = aiohttp.ClientTimeout(total=30)
    async with (
        federation(tmp_path) as fed,
        aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=0)) as http,
    ):
        await wait_ready(http, fed)
        east = fed.regions["us-east1"]
        ops: list[Op] = []
        stop = asyncio.Event()
        traffic = asyncio.create_task(load(http, fed, stop, ops))
        await asyncio.sleep(2.0)

        leader = await east.leader(http)
        t_node = time.monotonic()
        east.kill9(leader)
        await asyncio.sleep(3.0)
        node_view = await backends(http, fed)

        t_region = time.monotonic()
        for n in list(east.procs):
            east.kill9(n)
        await asyncio.sleep(3.0)
        stop.set()
        await asyncio.wait_for(traffic, 40)
        region_view = await backends(http, fed)

    # -------------------------------------------------------- what the clients saw
    def in_flight(op: Op, t: float) -> bool:
        return op.t0 <= t <= op.t1

    unexpected, unknown_at = [], {t_node: 0, t_region: 0}
    for op in ops:
        if op.status in (200, 201):
            continue
        kill = next((t for t in (t_node, t_region) if in_flight(op, t)), None)
        if op.kind == "create" and op.status in (502, 504) and kill is not None:
            unknown_at[kill] += 1  # may have been applied: told so, never re-sent
            continue
        if (
            op.kind == "read"
            and op.status in (502, 503)
            and op.home == "us-east1"
            and op.t1 >= t_region
        ):
            assert op.outcome == "not-applied"
            continue
        unexpected.append(op)
    assert not unexpected, f"errors the policy does not allow: {unexpected[:5]}; log {fed.log}"
    assert all(n <= WORKERS for n in unknown_at.values())

    created = [op for op in ops if op.kind == "create" and op.status == 201]
    between = [op for op in created if t_node + 1.5 < op.t0 < t_region]
    assert between, "no create succeeded after the leader's death"
    # two of three nodes left: 2/3 x 1.4 = 93% of creates stay, 7% spill to the nearest
    # region (Envoy's overprovisioning), never across the ocean
    stayed = sum(op.home == "us-east1" for op in between) / len(between)
    assert stayed > 0.75 or len(between) < 30, stayed
    assert {op.home for op in between} <= {"us-east1", "us-west1"}
    after = [op for op in created if op.t0 > t_region + 1.0]
    assert after, "no create succeeded after the region's death"
    assert {op.home for op in after} == {"us-west1"}, "spill-over must go to the nearest region"
    reads_after = [op for op in ops if op.kind == "read" and op.t0 > t_region + 1.0]
    assert reads_after
    assert all(op.status == 200 for op in reads_after if op.home == "us-west1")

    # -------------------------------------------------------- when the sending stopped
    def last_sent(view: dict[str, Any], backend: str) -> float:
        row = next(b for b in view["backends"] if b["id"] == backend)
        assert row["available"] is False, row
        return float(row["last_sent_monotonic"] or 0.0)

    node_cutoff = last_sent(node_view, f"us-east1/{leader}") - t_node
    region_cutoff = max(
        last_sent(region_view, f"us-east1/n{i}") - t_region for i in (1, 2, 3) if f"n{i}" != leader
    )
    print(
        f"last request to the killed leader {node_cutoff * 1000:.1f} ms after the kill; "
        f"to the killed region {region_cutoff * 1000:.1f} ms after; "
        f"{len(ops)} requests, unknown outcomes at the kills: {list(unknown_at.values())}"
    )
    assert node_cutoff < CUTOFF_S
    assert region_cutoff < CUTOFF_S
