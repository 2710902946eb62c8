"""Operator benchmark: time from applying 1 and N NovaCronRegions to all Ready on the local
control plane (kwok nodes), per-resource reconcile p50/p99 and operator RSS.

Goal (issue 6): 200 regions Ready < 60 s, reconcile p99 < 1 s, RSS < 150 MB.
``run(quick=True)`` uses 20 regions instead of 200.

Beside it, the floor: on a fresh control plane, the same children (rendered by the same
builders, ``novacron render``) applied by a plain client with no operator, timed until every
StatefulSet and Deployment is ready. There is no peer operator to run; this says how much of
the time is the control plane's own on this machine.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from novacron_operator.devcluster import DevCluster, up
from novacron_operator.kube import Kube, load_config
from novacron_operator.render import render

ROOT = Path(__file__).resolve().parents[2]
REGIONS = {"us-east": ["us-east-a", "us-east-b"], "eu-west": ["eu-west-a", "eu-west-b"],
           "ap-south": ["ap-south-a", "ap-south-b"]}  # fmt: skip


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _region(i: int) -> dict[str, Any]:
    name = list(REGIONS)[i % 3]  # several CRs may pin to the same node region
    return {
        "apiVersion": "novacron.io/v1alpha1",
        "kind": "NovaCronRegion",
        "metadata": {"name": f"bench-{i}"},
        "spec": {"clusterRef": {"name": "fleet"}, "regionName": name, "zones": REGIONS[name],
                 "replicas": 1, "agent": {"enabled": False}, "gateway": {"minReplicas": 1}},
    }  # fmt: skip


def _quantile(buckets: list[tuple[float, float]], q: float) -> float:
    """Quantile from cumulative histogram buckets (upper bound, count), interpolated."""
    total = buckets[-1][1]
    if total == 0:
        return 0.0
    prev_bound, prev_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= q * total:
            if bound == float("inf"):
                return prev_bound
            frac = (q * total - prev_count) / max(count - prev_count, 1e-9)
            return prev_bound + (bound - prev_bound) * frac
        prev_bound, prev_count = bound, count
    return prev_bound


def _reconcile_quantiles(port: int, kind: str) -> tuple[float, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    buckets: list[tuple[float, float]] = []
    for line in text.splitlines():
        prefix = f'novacron_operator_reconcile_seconds_bucket{{kind="{kind}",le="'
        if line.startswith(prefix):
            le = line[len(prefix) :].split('"', 1)[0]
            buckets.append((float(le), float(line.rsplit(" ", 1)[1])))
    return _quantile(buckets, 0.5), _quantile(buckets, 0.99)


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Bench:
    def __init__(self, cluster: DevCluster) -> None:
        self.c = cluster
        self.ns = "novacron-bench"

    def kubectl(self, *args: str, stdin: str | None = None) -> str:
        return self.c.kubectl(*args, stdin=stdin)

    def apply(self, objs: list[dict[str, Any]]) -> None:
        doc = json.dumps({"apiVersion": "v1", "kind": "List", "items": objs})
        self.kubectl("apply", "--server-side", "-n", self.ns, "-f", "-", stdin=doc)

    def ready_count(self, names: set[str]) -> int:
        items = json.loads(self.kubectl("get", "ncr", "-n", self.ns, "-o", "json"))["items"]
        n = 0
        for it in items:
            conds = (it.get("status") or {}).get("conditions") or []
            if it["metadata"]["name"] in names and any(
                c["type"] == "Ready" and c["status"] == "True" for c in conds
            ):
                n += 1
        return n

    def time_to_ready(
        self, objs: list[dict[str, Any]], pid: int, timeout: float
    ) -> tuple[float, float]:
        names = {o["metadata"]["name"] for o in objs}
        start = time.monotonic()
        self.apply(objs)
        peak = 0.0
        while self.ready_count(names) < len(names):
            peak = max(peak, _rss_mb(pid))
            if time.monotonic() - start > timeout:
                raise TimeoutError(f"{len(names)} regions not Ready after {timeout}s")
            time.sleep(0.5)
        return time.monotonic() - start, max(peak, _rss_mb(pid))


FLEET = {"apiVersion": "novacron.io/v1alpha1", "kind": "NovaCronCluster",
         "metadata": {"name": "fleet"}, "spec": {"version": "0.1.0"}}  # fmt: skip


async def _apply_all(kubeconfig: Path, objs: list[dict[str, Any]], inflight: int = 16) -> None:
    async with Kube(load_config(str(kubeconfig))) as kube:
        gate = asyncio.Semaphore(inflight)

        async def one(obj: dict[str, Any]) -> None:
            async with gate:
                await kube.apply(obj)

        await asyncio.gather(*(one(o) for o in objs))


def _workloads_ready(b: Bench) -> tuple[int, int]:
    """(ready, total) StatefulSets and Deployments in the bench namespace."""
    items = json.loads(b.kubectl("get", "statefulsets,deployments", "-n", b.ns, "-o", "json"))
    ready = 0
    for it in items["items"]:
        want = (it.get("spec") or {}).get("replicas", 1)
        st = it.get("status") or {}
        have = (
            st.get("readyReplicas", 0)
            if it["kind"] == "StatefulSet"
            else st.get("availableReplicas", 0)
        )
        ready += have >= want
    return ready, len(items["items"])


def floor(many: int) -> dict[str, Any]:
    """The same regions' children applied without the operator, on a fresh control plane."""
    cluster = up()
    try:
        b = Bench(cluster)
        b.kubectl("create", "namespace", b.ns)

        # no owner references: the rendered owners' UIDs do not exist here, and the garbage
        # collector would delete children of an owner it cannot find
        def plain(objs: list[dict[str, Any]]) -> list[dict[str, Any]]:
            for o in objs:
                o["metadata"].pop("ownerReferences", None)
            return objs

        base = plain(render([FLEET], b.ns, with_ca=True))
        asyncio.run(_apply_all(cluster.kubeconfig, base))
        done = {(o["kind"], o["metadata"]["name"]) for o in base}
        rendered = plain(render([FLEET, *(_region(i) for i in range(1, many + 1))], b.ns))
        children = [o for o in rendered if (o["kind"], o["metadata"]["name"]) not in done]
        start = time.monotonic()
        asyncio.run(_apply_all(cluster.kubeconfig, children))
        applied = time.monotonic() - start
        while True:
            ready, total = _workloads_ready(b)
            if total and ready == total:
                break
            if time.monotonic() - start > 600:
                raise TimeoutError(f"{total - ready} workloads not ready after 600 s")
            time.sleep(0.5)
        return {
            "objects": len(children),
            "applied_s": round(applied, 2),
            f"regions_{many}_ready_s": round(time.monotonic() - start, 2),
        }
    finally:
        cluster.stop()


def run(quick: bool) -> dict[str, Any]:
    """The operator's figures, and the floor's under ``"floor"``."""
    figures = operator_figures(quick)
    figures["floor"] = floor(20 if quick else 200)
    return figures


def operator_figures(quick: bool) -> dict[str, Any]:
    many = 20 if quick else 200
    cluster = up()
    op: subprocess.Popen[bytes] | None = None
    logdir = Path(tempfile.mkdtemp(prefix="novacron-opbench-"))
    try:
        b = Bench(cluster)
        b.kubectl("apply", "--server-side", "-f", str(ROOT / "crds"))
        b.kubectl("wait", "--for=condition=Established", "-f", str(ROOT / "crds"))
        b.kubectl("create", "namespace", b.ns)
        b.apply([FLEET])
        port = _port()
        with open(logdir / "operator.log", "wb") as log:
            op = subprocess.Popen(
                [sys.executable, "-m", "novacron_operator", "-n", b.ns, "--kubeconfig",
                 str(cluster.kubeconfig), "--health-host", "127.0.0.1", "--health-port",
                 str(port), "--workers", "4", "--resync", "60",
                 "--no-member-management"],  # kwok's pods run no node to ask
                stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "KUBECONFIG": ""},
            )  # fmt: skip
        one, _ = b.time_to_ready([_region(0)], op.pid, 60)
        n_time, peak = b.time_to_ready([_region(i) for i in range(1, many + 1)], op.pid, 600)
        p50, p99 = _reconcile_quantiles(port, "NovaCronRegion")
        return {
            "regions_1_ready_s": round(one, 2),
            f"regions_{many}_ready_s": round(n_time, 2),
            "reconcile_p50_s": round(p50, 4),
            "reconcile_p99_s": round(p99, 4),
            "operator_rss_mb": round(peak, 1),
            "goal": "200 regions < 60 s, p99 < 1 s, RSS < 150 MB",
        }
    finally:
        if op is not None:
            op.terminate()
            try:
                op.wait(30)
            except subprocess.TimeoutExpired:
                op.kill()
                op.wait()
        cluster.stop()
        import shutil

        shutil.rmtree(logdir, ignore_errors=True)


if __name__ == "__main__":
    print(json.dumps(run("--full" not in sys.argv), indent=2))
