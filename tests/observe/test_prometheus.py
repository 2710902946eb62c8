"""A real Prometheus (Debian's) on loopback scrapes the whole demo federation - ``novacron
demo --prometheus``: 3 regions x 3 ``novacron node`` processes and the gateway, from the
target file the demo writes, with the shipped rules loaded. Every Grafana dashboard panel's
query must return series while the demo runs, a per-region panel from every region (the
regional dashboard once per value of its ``$region`` variable).

``--network transport`` is the cheapest mode that runs every region and the gateway (no
namespaces; what is scraped is the same). Panels whose value needs an event (elections,
anomalies, 429s, 5xx) are not special: a node exports every known label value from its
first scrape, at 0 (docs/observability.md, Metrics), so their ``increase``/``rate`` is a
zero-valued series rather than none.
"""

from __future__ import annotations

import json
import re
import signal
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from novacron_core.demo import prometheus as demo_prometheus
from novacron_core.demo.federation import Layout
from novacron_core.demo.gateway import DemoGateway
from novacron_core.demo.procs import Supervisor
from novacron_core.observe import federation
from novacron_core.observe import rules as rules_module
from novacron_core.observe.metrics import lint_exposition
from tests.demo.harness import demo_pids, node_pids, output_until_interactive, start_demo

from .tools import PanelQuery, panel_queries, prometheus, promtool, run

REGIONS = ("us-east1", "us-west1", "europe-west1")
OCTET = 81  # 127.81.r.n: no other demo test uses it


def _get(url: str, timeout: float = 5.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.loads(r.read())


def _missing(base: str, q: PanelQuery) -> str | None:
    """Why the panel's query is not answered as it should be; None when it is."""
    try:
        series = federation.query(base, q.expr)
    except (OSError, ValueError) as e:  # a query error stays one until the deadline
        return f"{type(e).__name__}: {e}"
    if not series:
        return "no series"
    labelled = {s["metric"]["region"] for s in series if "region" in s["metric"]}
    want = {q.region} if q.region is not None else set(REGIONS)
    if labelled and labelled != want:
        return f"regions {sorted(labelled)}, expected {sorted(want)}"
    return None


def _summary_whole(base: str) -> str | None:
    """What the federation summary (`novacron status --prometheus`) lacks; None if nothing."""
    summary = federation.from_prometheus(base)
    if [r.region for r in summary.regions] != sorted(REGIONS):
        return f"regions {[r.region for r in summary.regions]}"
    for r in summary.regions:
        burn = r.slos["availability"].burn_rate["5m"] if "availability" in r.slos else None
        if not (
            r.nodes == 3
            and r.leader
            and r.health is not None
            and 0 <= r.health <= 100
            and set(r.components) >= {"leader", "replication", "errors", "links"}
            and burn is not None
            and burn >= 0
        ):
            return f"{r}"
    return None


def _check_prometheus(base: str, targets: list[dict[str, Any]]) -> None:
    # every target in the file is scraped and up (the demo's last chapter restarted a region)
    want = sum(len(g["targets"]) for g in targets)
    deadline = time.monotonic() + 30
    up: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        up = federation.query(base, "up == 1")
        if len(up) == want:
            break
        time.sleep(0.5)
    assert len(up) == want, up
    assert {s["metric"].get("region") for s in up if s["metric"]["job"] == "novacron-node"} == set(
        REGIONS
    )
    # the gateway's own series keep their own region label (the backend's): honor_labels
    avail = federation.query(base, 'novacron_gateway_backend_available{job="novacron-gateway"}')
    assert {s["metric"]["region"] for s in avail} == set(REGIONS), avail
    assert "exported_region" not in json.dumps(federation.query(base, "novacron_raft_term"))

    queries = panel_queries(REGIONS)
    assert len(queries) >= 40
    missing = {q: "not asked yet" for q in queries}
    deadline = time.monotonic() + 40
    while missing and time.monotonic() < deadline:
        missing = {q: why for q in missing if (why := _missing(base, q)) is not None}
        if missing:
            time.sleep(1.0)
    assert not missing, "panels without their series:\n" + "\n".join(
        f"  {q.dashboard} / {q.title} [{q.region}]: {why}: {q.expr}" for q, why in missing.items()
    )
    # the rules evaluate without errors (their last evaluation: waited for, in case one
    # timed out on a loaded machine; a broken rule stays broken)
    deadline = time.monotonic() + 20
    while True:
        groups = _get(base + "/api/v1/rules")["data"]["groups"]
        assert {g["name"] for g in groups} == {g["name"] for g in rules_module.groups()}
        bad = [
            (r["name"], r.get("lastError"))
            for g in groups
            for r in g["rules"]
            if r.get("health") not in ("ok", "unknown")
        ]
        if not bad or time.monotonic() > deadline:
            break
        time.sleep(1.0)
    assert not bad, bad
    # the federation summary (`novacron status --prometheus`): every region, whole. A node
    # scores its error share from its second health sample on (NOVACRON_OBSERVE_INTERVAL_S,
    # 5 s): the region the story's last chapter restarted may lack it for a few seconds.
    deadline = time.monotonic() + 30
    while (lacks := _summary_whole(base)) is not None and time.monotonic() < deadline:
        time.sleep(1.0)
    assert lacks is None, lacks


@pytest.mark.slow
def test_every_dashboard_query_returns_series_from_the_demo_federation(tmp_path: Path) -> None:
    binary = prometheus()  # skips with how to install it when absent
    t0 = time.monotonic()
    proc = start_demo(
        tmp_path, OCTET, "--interactive", "--network", "transport", "--prometheus", binary
    )
    try:
        text = output_until_interactive(proc)
        found = re.search(r"Prometheus: (http://\S+) scrapes", text)
        assert found, text
        base = found.group(1)
        assert base == f"http://127.{OCTET}.250.2:9090"
        listed = re.search(r"Prometheus targets \(file_sd\): (\S+)", text)
        assert listed, text
        targets = json.loads(Path(listed.group(1)).read_text())
        # the target file: every region's nodes, labelled, and the gateway
        nodes = {g["labels"]["region"]: g["targets"] for g in targets if "region" in g["labels"]}
        assert sorted(nodes) == sorted(REGIONS)
        assert all(len(t) == 3 for t in nodes.values()), nodes
        assert [g["targets"] for g in targets if g["labels"]["job"] == "novacron-gateway"] == [
            [f"127.{OCTET}.250.1:9443"]
        ]
        # every node's /metrics follows the conventions (region label, names, bounds)
        for addr in (a for t in nodes.values() for a in t):
            with urllib.request.urlopen(f"http://{addr}/metrics", timeout=5) as r:
                assert lint_exposition(r.read().decode()) == [], addr
        _check_prometheus(base, targets)
        from novacron_core.cli import main

        res = CliRunner().invoke(
            main, ["status", "--url", f"http://{nodes['us-east1'][0]}", "--prometheus", base]
        )
        assert res.exit_code == 0, res.output
        for region in REGIONS:
            assert region in res.output, res.output
        assert "availability" in res.output
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=30)
        assert proc.returncode == 0, text + rest
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=30)
    # Prometheus went with the nodes, and its data with the temp dir
    assert node_pids(OCTET) == []
    assert demo_pids(tmp_path / "tmp") == []
    assert list((tmp_path / "tmp").iterdir()) == []
    took = time.monotonic() - t0
    assert took < 90, f"took {took:.0f}s"


def test_panel_queries_are_not_trivially_empty_expressions() -> None:
    """The check above is only as good as the query list: every dashboard except the
    operator's has panels, and each panel at least one NovaCron metric."""
    qs = panel_queries()
    assert {q.dashboard for q in qs} == {"global", "regional", "protocol", "load-balancer"}
    for q in qs:
        assert "novacron" in q.expr or "process_" in q.expr, q
        assert "$" not in q.expr, q  # every variable substituted
    per_region = panel_queries(REGIONS)
    assert {q.region for q in per_region if q.dashboard == "regional"} == set(REGIONS)


def test_the_demo_prometheus_config_and_target_file_pass_promtool(tmp_path: Path) -> None:
    """What `novacron demo --prometheus` hands Prometheus: promtool reads the config, the
    target file it names and the rules; the targets are the layout's own addresses."""
    tool = promtool()
    layout = Layout(2, 3, OCTET)
    with Supervisor(str(tmp_path / "demo")) as sup:
        gw = DemoGateway(sup, layout, OCTET)
        targets = demo_prometheus.write_targets(sup.base, layout, gw)
        rules = sup.base / "novacron.rules.yaml"
        rules.write_text(rules_module.render())
        cfg = sup.base / "prometheus.yml"
        cfg.write_text(yaml.safe_dump(demo_prometheus.config(targets, rules)))
        res = run([tool, "check", "config", str(cfg)])
        assert res.returncode == 0, res.stdout + res.stderr
        groups = json.loads(targets.read_text())
    node = {"job": "novacron-node"}
    assert groups == [
        {"targets": [n.http_addr for n in layout.in_region(r)], "labels": {**node, "region": r}}
        for r in layout.regions
    ] + [{"targets": [gw.admin_addr], "labels": {"job": "novacron-gateway"}}]
    assert groups[0]["targets"][0] == f"127.{OCTET}.1.1:8080"
