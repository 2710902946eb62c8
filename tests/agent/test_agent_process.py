"""``novacron agent`` as real processes on loopback (unprivileged mode: measure and route)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.agent.procs import free_ports, get, start_agent, stop, wait_for, wait_healthy

NAMES = ("a", "b", "c")
REGIONS = ("r1", "r2", "r3")


def _start_three() -> tuple[list[str], list]:
    ports = free_ports(6)
    procs, urls = [], []
    try:
        for i, name in enumerate(NAMES):
            args = ["--name", name, "--region", REGIONS[i], "--listen", f"127.0.0.1:{ports[2 * i]}",
                    "--http", f"127.0.0.1:{ports[2 * i + 1]}"]  # fmt: skip
            for j, other in enumerate(NAMES):
                if j != i:
                    args += ["--peer", f"{other}=127.0.0.1:{ports[2 * j]},{REGIONS[j]}"]
            procs.append(start_agent(args))
            urls.append(f"http://127.0.0.1:{ports[2 * i + 1]}")
        for url, p in zip(urls, procs, strict=True):
            wait_healthy(url, p)
    except BaseException:
        stop(procs)
        raise
    return urls, procs


@pytest.fixture
def three_agents():
    for attempt in range(3):
        try:
            urls, procs = _start_three()
            break
        except AssertionError as e:
            # another process on this shared machine took a port between our pick and bind
            if "Address already in use" not in str(e) or attempt == 2:
                raise
    try:
        yield urls, procs
    finally:
        codes = stop(procs)
    errs = [p.stderr.read() for p in procs]
    assert codes == [0, 0, 0], f"an agent did not stop cleanly on SIGTERM: {codes} {errs}"


def test_three_agents_measure_each_other_route_and_serve_their_views(three_agents):
    urls, _ = three_agents

    def full_routes():
        _, body = get(urls[0] + "/v1/routes?qos=critical")
        return body if {r["dst"] for r in body["routes"]} == {"b", "c"} else None

    routes = wait_for(full_routes, timeout=15)
    assert routes, get(urls[0] + "/v1/routes")
    # loopback RTTs are tiny and noisy: either way may be the shorter, but every route has
    # both, the direct link and the way through the third member, disjoint from each other
    for r in routes["routes"]:
        other = ({"b", "c"} - {r["dst"]}).pop()
        assert sorted(map(tuple, r["candidates"])) == sorted(
            [("a", r["dst"]), ("a", other, r["dst"])]
        )
        assert tuple(r["path"]) in {("a", r["dst"]), ("a", other, r["dst"])}
    assert all(r["dscp"] == 46 for r in routes["routes"])

    _, topo = get(urls[0] + "/v1/topology")
    links = {(x["a"], x["b"]): x for x in topo["links"]}
    assert set(links) == {("a", "b"), ("a", "c"), ("b", "c")}  # b-c from the adverts
    assert all(x["up"] and x["rtt_ms"] < 50 for x in links.values())
    assert set(topo["adverts"]) == {"b", "c"}
    assert topo["peers"]["b"]["answered"] > 0

    _, coords = get(urls[0] + "/v1/coordinates?nearest=b,c")
    assert coords["nearest"] in ("b", "c")
    assert set(coords["estimates_ms"]) == {"b", "c"}

    code, problem = get(urls[0] + "/v1/routes?qos=gold")
    assert code == 422
    assert problem["field"] == "qos"
    code, problem = get(urls[0] + "/v1/routes?dst=zz")
    assert code == 404

    with __import__("urllib.request").request.urlopen(urls[0] + "/metrics") as r:
        text = r.read().decode()
    assert 'novacron_agent_link_up{peer="b"} 1.0' in text
    _, health = get(urls[0] + "/healthz")
    assert health["peers_up"] == 2
    assert health["tunnels"] == "not configured"


def test_a_killed_peer_is_reported_down_and_routes_move(three_agents):
    urls, procs = three_agents
    assert wait_for(lambda: len(get(urls[0] + "/v1/routes?dst=b&qos=critical")[1]["routes"]), 15)
    stop([procs[1]])  # b goes away: a-b down; a's route to b has nowhere to go (b is gone)

    def b_down():
        _, t = get(urls[0] + "/v1/topology")
        return not t["peers"]["b"]["up"]

    assert wait_for(b_down, timeout=5)
    _, routes = get(urls[0] + "/v1/routes")
    kinds = [e["kind"] for e in routes["events"]]
    assert "link-down" in kinds


def _run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "novacron_core.runtime.agent.cli", *args],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_bad_config_is_a_clear_error_naming_the_field(tmp_path):
    bad = tmp_path / "agent.json"
    bad.write_text(
        json.dumps({"region": "r1", "name": "a", "peers": [{"name": "b", "address": "nope"}]})
    )
    p = _run_cli("--config", str(bad))
    assert p.returncode == 1
    assert "peers[0].address" in p.stderr
    bad.write_text(json.dumps({"region": "r1", "probe": {"intervalMs": 1}}))
    p = _run_cli("--config", str(bad))
    assert "probe.intervalMs" in p.stderr
    bad.write_text(json.dumps({"region": "r1", "bogus": 1}))
    assert "bogus: unknown field" in _run_cli("--config", str(bad)).stderr
    bad.write_text("{")
    assert "not valid JSON" in _run_cli("--config", str(bad)).stderr
    assert "region: missing" in _run_cli().stderr


def test_operator_region_json_and_topology_configmap_are_accepted(tmp_path):
    """The shapes the operator renders today (builders/region.py, builders/federation.py)."""
    region = tmp_path / "region.json"
    region.write_text(json.dumps({
        "cluster": "prod", "region": "us-east1", "zones": ["us-east1-b"], "protocol": "raft",
        "nodes": "east.ns.svc:8080", "ports": {"api": 8080, "peer": 7000, "metrics": 9090},
        "tls": {"mode": "auto", "caSecret": "prod-ca"},
    }))  # fmt: skip
    topo = tmp_path / "topology.json"
    topo.write_text(json.dumps({
        "federation": "fed", "gossip": {}, "members": [
            {"name": "us-east1", "local": True, "endpoints": ["east.ns.svc:7000"]},
            {"name": "eu", "local": False, "endpoints": ["eu.example:7000"]},
            {"name": "ap", "region": "asia", "agents": ["10.0.0.9:7946"], "endpoints": ["x:1"]},
        ],
    }))  # fmt: skip
    p = _run_cli("--config", str(region), "--topology", str(topo), "--name", "east-n1",
                 "--print-config")  # fmt: skip
    assert p.returncode == 0, p.stderr
    cfg = json.loads(p.stdout)
    assert cfg["region"] == "us-east1"
    assert cfg["zones"] == ["us-east1-b"]
    assert [(x["name"], x["mode"], x["address"]) for x in cfg["peers"]] == [
        ("eu", "tcp", "eu.example:7000"),
        ("ap", "agent", "10.0.0.9:7946"),
    ]


def test_help_explains_the_endpoints_and_the_shutdown():
    p = _run_cli("--help")
    assert p.returncode == 0
    for word in ("/v1/routes", "/v1/coordinates", "SIGTERM", "NET_ADMIN", "--keep-tunnels-on-exit"):
        assert word in p.stdout


def test_bandwidth_comes_from_timed_transfers(tmp_path):
    ports = free_ports(4)
    procs = []
    try:
        for i, (name, other) in enumerate((("a", "b"), ("b", "a"))):
            cfg = tmp_path / f"{name}.json"
            cfg.write_text(json.dumps({
                "name": name, "region": f"r-{name}",
                "listen": f"127.0.0.1:{ports[2 * i]}", "http": f"127.0.0.1:{ports[2 * i + 1]}",
                "peers": [{"name": other, "region": f"r-{other}",
                           "address": f"127.0.0.1:{ports[2 * (1 - i)]}"}],
                "probe": {"bandwidthIntervalS": 0.5, "bandwidthBytes": 4 << 20},
            }))  # fmt: skip
            procs.append(start_agent(["--config", str(cfg)]))
        url = f"http://127.0.0.1:{ports[1]}"
        wait_healthy(url, procs[0])
        wait_healthy(f"http://127.0.0.1:{ports[3]}", procs[1])

        def measured():
            links = get(url + "/v1/topology")[1]["links"]
            return links and links[0]["bandwidth_mbps"] != 1000.0 and links[0]["bandwidth_mbps"]

        mbps = wait_for(measured, timeout=10)
        # a link starts at exactly 1000 Mbit/s; a sample moved it (loopback through asyncio
        # gives somewhere between a few hundred Mbit/s and several Gbit/s here)
        assert mbps, "no bandwidth sample arrived"
        assert mbps > 10.0, mbps
    finally:
        assert stop(procs) == [0, 0]
