"""The demo's gateway chapter can fail: its verdicts on client answers and its
reconciliation with what the regions hold catch a dishonest error, a lost acknowledged
write and a "not applied" write that was applied. The whole chapter runs with real
processes in ``test_demo_story.py``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from novacron_core.balancing.geo import KNOWN_REGIONS
from novacron_core.demo.federation import Layout
from novacron_core.demo.gateway import Op, gateway_config, judge, nearest, reconcile
from novacron_core.runtime.gateway.config import load_config

KILL, KILLED = 10.0, 10.05


def op(
    vm: str, t0: float, t1: float, status: int, outcome: str = "", home: str = "", by: str = ""
) -> Op:
    return Op(vm, t0, t1, status, outcome, home, by)


def test_only_errors_that_say_what_happened_are_honest() -> None:
    ops = [
        op("ok", 9.0, 9.1, 201, home="us-east1"),
        op("inflight", 9.99, 10.2, 502, "unknown"),  # in flight at the kill: allowed
        op("timeout", 10.01, 12.0, 504, "unknown"),  # sent during the kill
        op("later-unknown", 10.5, 10.6, 502, "unknown"),  # sent after the kill: not allowed
        op("early-unknown", 9.0, 9.5, 502, "unknown"),  # answered before the kill
        op("refused", 10.5, 10.6, 503, "not_applied"),
        # a surviving node's own answer: its leader changed under the write, and it says so
        op("node-504", 10.5, 10.9, 504, "unknown", by="us-west1/n3"),
        op("node-504-no-outcome", 10.5, 10.9, 504, by="us-west1/n3"),
        op("503-no-outcome", 10.5, 10.6, 503),  # says nothing about what happened
        op("broken", 10.5, 10.6, 0),  # the gateway gave no answer at all
        op("500", 10.5, 10.6, 500, "unknown"),
        op("201-without-record", 10.5, 10.6, 201),
    ]
    v = judge(ops, KILL, KILLED)
    assert [o.vm for o in v["acked"]] == ["ok"]
    assert [o.vm for o in v["unknown"]] == ["inflight", "timeout"]
    assert [o.vm for o in v["not_applied"]] == ["refused"]
    assert [o.vm for o in v["node_unknown"]] == ["node-504"]
    assert [o.vm for o in v["dishonest"]] == [
        "later-unknown",
        "early-unknown",
        "node-504-no-outcome",
        "503-no-outcome",
        "broken",
        "500",
        "201-without-record",
    ]


def test_reconcile_finds_lost_acks_phantom_writes_and_counts_unknowns() -> None:
    v = judge(
        [
            op("a", 1, 2, 201, home="us-east1"),
            op("b", 1, 2, 201, home="us-west1"),
            op("c", 1, 2, 201, home="us-east1"),  # acknowledged, then lost
            op("d", 10, 11, 503, "not_applied"),  # said not applied, yet held
            op("e", 10, 11, 503, "not_applied"),
            op("u1", 9.9, 10.5, 502, "unknown"),
            op("u2", 9.9, 10.5, 502, "unknown"),
        ],
        KILL,
        KILLED,
    )
    held = {
        "us-east1": {"a": "us-east1", "u1": "us-east1", "d": "us-east1"},
        # a region's list may carry another region's record (a replica): only the home counts
        "us-west1": {"b": "us-west1", "c": "us-east1"},
    }
    rec = reconcile(v, held)
    assert rec.lost == ["c"]
    assert rec.phantom == ["d"]
    assert rec.unknown_held == 1
    assert rec.twice == []
    fixed = reconcile(v, {**held, "us-east1": {**held["us-east1"], "c": "us-east1"}})
    assert fixed.lost == []
    # a create retried in another region after it had been applied at home: applied twice
    dup = reconcile(v, {**held, "us-west1": {**held["us-west1"], "a": "us-west1"}})
    assert dup.twice == ["a"]


def test_after_us_east1_the_nearest_region_is_us_west1() -> None:
    regions = ["us-east1", "us-west1", "europe-west1"]
    assert nearest(regions, KNOWN_REGIONS["us-east1"]) == regions
    assert nearest(regions, KNOWN_REGIONS["europe-west1"])[0] == "europe-west1"


def test_the_demo_renders_a_config_the_gateway_loads(tmp_path: Path) -> None:
    """The operator's shape (region, regions with seeds and location, listen, admin_listen,
    api_port, shutdown_timeout_s): ``novacron gateway --config`` takes it as is."""
    lay = Layout(3, 3, 91)
    doc = gateway_config(lay, "127.91.250.1")
    path = tmp_path / "gateway.json"
    path.write_text(json.dumps(doc))
    cfg = load_config(str(path), None, (), ())
    assert cfg.home() == "us-east1"
    assert [r.name for r in cfg.regions] == lay.regions
    assert cfg.regions[1].seeds == [f"127.91.2.{j}:8080" for j in (1, 2, 3)]
    assert cfg.locations()["europe-west1"].lat == KNOWN_REGIONS["europe-west1"].lat
    assert cfg.listen == "127.91.250.1:8443"
    assert cfg.admin_listen == "127.91.250.1:9443"


def test_the_demo_config_has_the_operators_shape() -> None:
    builder = pytest.importorskip("novacron_operator.builders.gateway")
    own = builder.GatewayRegion("us-east1", ("a:8080",), (1.0, 2.0))
    theirs = builder.gateway_config(own, ())
    ours = gateway_config(Layout(1, 3, 91), "127.91.250.1")
    assert set(ours) == set(theirs)
    assert set(ours["regions"][0]) == set(theirs["regions"][0])
