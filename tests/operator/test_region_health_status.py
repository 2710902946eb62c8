"""status.health of a NovaCronRegion from a REAL node process's ``/v1/observe/health``:
the operator's admin client reads the score, its components and the SLO burn rates into
the typed status model (the CRD's schema), re-reads them at most every 15 s, and drops
them when no node answers."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from novacron_operator.admin import NodeClients, Resolver
from novacron_operator.health_status import REFRESH_S, read_region_health
from novacron_operator.models import NovaCronRegionStatus

from tests.runtime.procs import ProcCluster, call

pytestmark = pytest.mark.slow


@pytest.fixture
def node(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ProcCluster]:
    monkeypatch.setenv("NOVACRON_OBSERVE_INTERVAL_S", "0.2")
    c = ProcCluster(tmp_path, size=1, extra=["--region", "eu-health"])
    c.start_all()
    try:
        yield c
    finally:
        c.stop_all()


async def test_region_status_health_comes_from_the_nodes_own_health_route(
    node: ProcCluster, tmp_path: Path
) -> None:
    addresses = tmp_path / "addresses.json"
    addresses.write_text(
        json.dumps(
            {
                "eu-health-0": {"peer": "127.0.0.1:1", "http": "127.0.0.1:1"},  # nobody there
                "n1": {"peer": "x:1", "http": f"127.0.0.1:{node.http_ports['n1']}"},
            }
        )
    )
    clients = NodeClients(Resolver(str(addresses)))
    try:
        async with aiohttp.ClientSession() as http:
            await node.leader(http)
            await node.all_ready(http)
            for i in range(20):
                st, _ = await call(http, "PUT", node.url("n1") + f"/v1/kv/k{i}", data=b"v")
                assert st == 200
            await asyncio.sleep(0.5)  # a few samples of the node's observer
        now = dt.datetime.now(dt.UTC).replace(microsecond=0)  # observedAt's precision
        # the first pod's node does not answer: the next one's view is taken
        doc, again = await read_region_health(
            clients, "ns", "svc", ["eu-health-0", "n1"], None, now
        )
        assert doc is not None
        assert again == REFRESH_S
        status = NovaCronRegionStatus.model_validate({"health": doc})
        h = status.health
        assert h is not None
        assert h.node == "n1"
        assert 0 <= h.score <= 100
        assert h.components["leader"] == 1.0  # one voter, leading, no election storm
        assert "conflicts" not in h.components  # not measured in a lone region
        slos = {s.name: s for s in h.slos}
        assert set(slos) == {"availability", "write_latency"}
        assert slos["availability"].objective == 0.999
        # twenty client writes, none answered 5xx: the availability budget is not burning
        assert slos["availability"].burn_rate_5m == 0.0
        assert slos["write_latency"].burn_rate_5m is not None
        assert doc["observedAt"].endswith("Z")
        # read again within REFRESH_S: the same value, no request (no node answers now)
        gone = ["eu-health-0"]
        later = now + dt.timedelta(seconds=5)
        same, again = await read_region_health(clients, "ns", "svc", gone, doc, later)
        assert same is doc
        assert abs(again - (REFRESH_S - 5)) < 1e-6
        # older than that, and no node answers: no health in status (never a stale one)
        much_later = now + dt.timedelta(seconds=REFRESH_S + 1)
        none, _ = await read_region_health(clients, "ns", "svc", gone, doc, much_later)
        assert none is None
    finally:
        await clients.close()


def test_the_crd_schema_carries_the_health_fields() -> None:
    import yaml

    root = Path(__file__).resolve().parents[2]
    crd: Any = yaml.safe_load((root / "crds/novacron.io_novacronregions.yaml").read_text())
    (version,) = crd["spec"]["versions"]
    health = version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]["health"]
    props = health["properties"]
    assert {"score", "node", "components", "slos", "observedAt"} <= set(props)
    slo = props["slos"]["items"]["properties"]
    assert {"name", "objective", "burnRate5m", "burnRate1h", "burnRate6h"} <= set(slo)
