"""A real Prometheus (Debian's) on loopback scrapes real ``novacron node`` processes with the
shipped rules loaded; every Grafana dashboard panel's query must return series.

TODO (lead, after the region-node restructure): scrape the whole demo federation instead
of one three-node group, so per-region panels see several regions.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from click.testing import CliRunner

from novacron_core.observe import federation
from novacron_core.observe.metrics import lint_exposition
from tests.runtime.procs import ProcCluster, call, free_ports, stop

from .tools import DASHBOARDS, RULES, prometheus

pytestmark = pytest.mark.slow
REGION = "eu-test"


def _get(url: str, timeout: float = 5.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.loads(r.read())


def _query(base: str, expr: str) -> list[dict[str, Any]]:
    return federation.query(base, expr)


@contextlib.contextmanager
def running_prometheus(tmp: Path, targets: list[str]) -> Iterator[str]:
    port = free_ports(1)[0]
    rules = tmp / "novacron.rules.yaml"
    rules.write_text(RULES.read_text())
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(rules)],
        "scrape_configs": [{"job_name": "novacron-node", "static_configs": [{"targets": targets}]}],
    }
    (tmp / "prometheus.yml").write_text(yaml.safe_dump(config))
    log = open(tmp / "prometheus.log", "wb")  # noqa: SIM115 (closed below)
    proc = subprocess.Popen(
        [
            prometheus(),
            f"--config.file={tmp / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=log,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(base + "/-/ready", timeout=1) as r,
            ):
                if r.status == 200:
                    break
            assert proc.poll() is None, (tmp / "prometheus.log").read_text()[-2000:]
            time.sleep(0.2)
        else:
            raise AssertionError("prometheus not ready in 30s")
        yield base
    finally:
        stop(proc)
        log.close()


def panel_queries() -> list[tuple[str, str, str]]:
    out = []
    for path in sorted(DASHBOARDS.glob("*.json")):
        if path.name == "operator.json":
            continue  # the operator's metrics: checked by the operator's own e2e tests
        for panel in json.loads(path.read_text())["panels"]:
            for t in panel["targets"]:
                expr = t["expr"].replace('"$region"', '".*"')
                out.append((path.stem, panel["title"], expr))
    return out


async def _traffic(cluster: ProcCluster, http: aiohttp.ClientSession, seconds: float) -> None:
    """Writes through every node (followers proxy to the leader), reads, a few 404s."""
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    i = 0
    while loop.time() < end:
        for n in cluster.names:
            st, _ = await call(http, "PUT", cluster.url(n) + f"/v1/kv/obs-{i}", data=b"v")
            assert st == 200, st
            await call(http, "GET", cluster.url(n) + f"/v1/kv/obs-{i}")
            await call(http, "GET", cluster.url(n) + "/v1/kv/absent")
            i += 1
        await asyncio.sleep(0.05)


async def test_every_dashboard_query_returns_series_from_real_nodes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prometheus()  # skips with how to install it when absent
    monkeypatch.setenv("NOVACRON_OBSERVE_INTERVAL_S", "1")
    cluster = ProcCluster(tmp_path / "nodes", extra=["--region", REGION])
    (tmp_path / "nodes").mkdir()
    cluster.start_all()
    try:
        async with aiohttp.ClientSession() as http:
            await cluster.leader(http)
            await cluster.all_ready(http)
            # every node's /metrics follows the conventions (region label, names, bounds)
            for n in cluster.names:
                async with http.get(cluster.url(n) + "/metrics") as r:
                    assert lint_exposition(await r.text()) == []
            targets = [f"127.0.0.1:{cluster.http_ports[n]}" for n in cluster.names]
            (tmp_path / "prom").mkdir()
            with running_prometheus(tmp_path / "prom", targets) as base:
                await _traffic(cluster, http, 6.0)
                queries = panel_queries()
                assert len(queries) >= 30
                missing: list[tuple[str, str, str]] = list(queries)
                deadline = time.monotonic() + 40
                while missing and time.monotonic() < deadline:
                    await _traffic(cluster, http, 1.0)
                    missing = [q for q in missing if not _query(base, q[2])]
                assert not missing, f"panels without series: {missing}"
                # the rules evaluate without errors
                groups = _get(base + "/api/v1/rules")["data"]["groups"]
                bad = [
                    (r["name"], r.get("lastError"))
                    for g in groups
                    for r in g["rules"]
                    if r.get("health") not in ("ok", "unknown")
                ]
                assert not bad, bad
                # the federation summary and `novacron status --prometheus`
                summary = federation.from_prometheus(base)
                (region,) = summary.regions
                assert region.region == REGION
                assert region.nodes == 3
                assert region.leader
                assert region.health is not None
                assert 0 <= region.health <= 100
                assert set(region.components) >= {"leader", "replication", "errors", "links"}
                assert "availability" in region.slos
                burn = region.slos["availability"].burn_rate["5m"]
                assert burn is not None
                assert burn >= 0
                from novacron_core.cli import main

                urls = [a for n in cluster.names for a in ("--url", cluster.url(n))]
                res = await asyncio.to_thread(
                    CliRunner().invoke, main, ["status", *urls, "--prometheus", base]
                )
                assert res.exit_code == 0, res.output
                assert REGION in res.output
                assert "availability" in res.output
    finally:
        cluster.stop_all()


def test_panel_queries_are_not_trivially_empty_expressions() -> None:
    """The check above is only as good as the query list: every dashboard except the
    operator's has panels, and each panel at least one NovaCron metric."""
    qs = panel_queries()
    dashboards = {d for d, _, _ in qs}
    assert dashboards == {"global", "regional", "protocol", "load-balancer"}
    for d, title, expr in qs:
        assert "novacron" in expr or "process_" in expr, (d, title, expr)
