"""A node's observability routes and the CLI over them, on real node processes."""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from click.testing import CliRunner

from novacron_core.cli import main
from tests.runtime.procs import ProcCluster

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> ProcCluster:
    root = tmp_path_factory.mktemp("observe-nodes")
    c = ProcCluster(root, extra=["--region", "eu-obs", "--log-format", "json"])
    c.start_all()
    yield c  # type: ignore[misc]
    c.stop_all()


@pytest.fixture
async def http(cluster: ProcCluster) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        await cluster.leader(s)
        await cluster.all_ready(s)
        yield s


async def test_health_breakdown(cluster: ProcCluster, http: aiohttp.ClientSession) -> None:
    async with http.get(cluster.url("n1") + "/v1/observe/health") as r:
        assert r.status == 200
        body = await r.json()
    assert body["region"] == "eu-obs"
    assert set(body["components"]) == {"leader", "replication", "errors", "links", "conflicts"}
    assert 0 <= body["score"] <= 100
    assert body["components"]["conflicts"]["score"] is None  # not measured in one region


@pytest.mark.parametrize(
    ("query", "field"),
    [("metric=vms", "metric"), ("horizons=ten", "horizons"), ("horizons=0,30", "horizons")],
)
async def test_bad_forecast_requests_get_a_422_naming_the_field(
    cluster: ProcCluster, http: aiohttp.ClientSession, query: str, field: str
) -> None:
    async with http.get(cluster.url("n1") + "/v1/observe/forecast?" + query) as r:
        assert r.status == 422
        assert r.content_type == "application/problem+json"
        assert (await r.json())["field"] == field


async def test_forecast_from_the_nodes_stored_history(
    cluster: ProcCluster, http: aiohttp.ClientSession
) -> None:
    url = cluster.url("n2") + "/v1/observe/forecast?metric=keys&horizons=30,90"
    async with http.get(url) as r:
        assert r.status == 409  # a fresh node: too little history, and it says so
        assert "history" in (await r.json())["title"]
    history = cluster.root / "n2" / "observe" / "history.jsonl"
    now = time.time()
    lines = [
        json.dumps({"t": now - h * 3600, "log_index": 0, "keys": 500 + 0.5 * (2000 - h)
                    + 20 * math.sin(h / 24 * 2 * math.pi / 7), "requests_total": 0})
        for h in range(2000, 0, -1)
    ]  # fmt: skip
    history.parent.mkdir(parents=True, exist_ok=True)
    history.write_text("\n".join(lines) + "\n")
    async with http.get(url) as r:
        assert r.status == 200, await r.text()
        body = await r.json()
    assert [p["days_ahead"] for p in body["forecast"]] == [30, 90]
    assert body["forecast"][1]["mean"] > body["last_value"]  # it keeps growing
    res = await asyncio.to_thread(
        CliRunner().invoke, main, ["forecast", "--url", cluster.url("n2"), "--metric", "keys"]
    )
    assert res.exit_code == 0, res.output
    assert "ETS" in res.output
    assert "95% interval" in res.output


async def test_profiles_on_demand(cluster: ProcCluster, http: aiohttp.ClientSession) -> None:
    base = cluster.url("n3")
    async with http.get(base + "/debug/profile/cpu?seconds=100") as r:
        assert r.status == 422
    first = asyncio.ensure_future(http.get(base + "/debug/profile/cpu?seconds=2"))
    await asyncio.sleep(0.5)
    async with http.get(base + "/debug/profile/cpu?seconds=1") as r:
        assert r.status == 429  # one CPU profile at a time
    async with await first as r:
        assert r.status == 200
        prof = await r.json()
    assert prof["mode"] in ("py-spy", "cprofile")
    assert prof["top"]
    res = await asyncio.to_thread(
        CliRunner().invoke, main, ["debug", "profile", "--url", base, "--memory", "--top", "5"]
    )
    assert res.exit_code == 0, res.output
    assert "traced" in res.output
    res = await asyncio.to_thread(
        CliRunner().invoke,
        main,
        ["debug", "profile", "--url", base, "--seconds", "0.5", "--mode", "cprofile", "--json"],
    )
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["mode"] == "cprofile"


async def test_health_cli_and_json_logs(cluster: ProcCluster, http: aiohttp.ClientSession) -> None:
    res = await asyncio.to_thread(CliRunner().invoke, main, ["health", "--url", cluster.url("n1")])
    assert res.exit_code == 0, res.output
    assert "eu-obs" in res.output
    assert "replication" in res.output
    res = await asyncio.to_thread(CliRunner().invoke, main, ["health"])
    assert res.exit_code != 0
    assert "--prometheus" in res.output
    lines = (cluster.root / "n1.log").read_text().splitlines()
    records = [json.loads(line) for line in lines if line.startswith("{")]
    assert records, lines[:5]
    assert all({"time", "level", "logger", "message"} <= set(r) for r in records)
    assert any("raft role" in r["message"] for r in records)


def test_forecast_cli_from_csv(tmp_path: Path) -> None:
    rows = ["timestamp,value"] + [
        f"{1_700_000_000 + d * 86400},{100 + d + 5 * math.sin(d * 2 * math.pi / 7)}"
        for d in range(90)
    ]
    (tmp_path / "vms.csv").write_text("\n".join(rows))
    res = CliRunner().invoke(main, ["forecast", "--csv", str(tmp_path / "vms.csv"), "--json"])
    assert res.exit_code == 0, res.output
    body = json.loads(res.output)
    assert body["history_days"] == 90
    assert [p["days_ahead"] for p in body["forecast"]] == [30, 60, 90]
    res = CliRunner().invoke(
        main, ["forecast", "--csv", str(tmp_path / "vms.csv"), "--horizons", "x"]
    )
    assert res.exit_code == 2
    assert "--horizons" in res.output
