"""The demo's network namespaces: the tc plan (pure), and the sweep of dead runs (root)."""

from __future__ import annotations

import ipaddress
import subprocess
import sys

import pytest

from novacron_core.demo import netns
from novacron_core.federation.netem import demo_rtt

REGIONS = ("us-east1", "us-west1", "europe-west1")


def _plan(netem: bool = True) -> netns.NetPlan:
    return netns.NetPlan(
        "ncd4194304",  # the largest pid Linux hands out: every name must still fit
        REGIONS,
        ipaddress.IPv4Network("198.18.16.0/20"),
        demo_rtt(list(REGIONS)),
        netem,
    )


def test_names_fit_an_interface_name_and_carry_their_owner() -> None:
    plan = _plan()
    for name in (plan.bridge, plan.host_if(8), f"{plan.prefix}n8"):
        assert len(name) <= 15, name  # IFNAMSIZ - 1
        assert netns.owner(name) == 4194304
    assert netns.owner(plan.ns(0)) == 4194304
    assert netns.owner("ncdx") is None
    assert netns.owner("eth0") is None


def test_each_region_has_its_own_subnet_in_the_block() -> None:
    plan = _plan()
    assert [str(plan.subnet(i)) for i in range(3)] == [
        "198.18.16.0/24",
        "198.18.17.0/24",
        "198.18.18.0/24",
    ]
    assert plan.node_addr(1, 2) == "198.18.17.13"
    assert plan.gateway == "198.18.31.1"
    assert all(plan.subnet(i).subnet_of(plan.block) for i in range(9))


def test_egress_delays_each_destination_region_by_half_its_rtt() -> None:
    lines = _plan().egress(0)  # us-east1
    assert "qdisc add dev eth0 root handle 1: htb default 1 r2q 100000" in lines
    assert "qdisc add dev eth0 parent 1:11 netem delay 33ms limit 100000" in lines  # us-west1
    assert "qdisc add dev eth0 parent 1:12 netem delay 32ms limit 100000" in lines  # europe
    assert (
        "filter add dev eth0 parent 1: protocol ip pref 10 u32 match ip dst 198.18.17.0/24 "
        "flowid 1:11"
    ) in lines
    assert not any("198.18.16.0/24" in line for line in lines)  # own region: undelayed
    west = _plan().egress(1)
    assert "qdisc add dev eth0 parent 1:12 netem delay 73ms limit 100000" in west


def test_without_netem_the_classes_only_queue() -> None:
    lines = _plan(netem=False).egress(0)
    assert not any("netem" in line for line in lines)
    assert "qdisc add dev eth0 parent 1:11 pfifo limit 10000" in lines


def test_a_partition_drops_on_the_bridge_both_ways_across_the_cut_only() -> None:
    plan = _plan()
    assert "qdisc add dev ncd4194304h2 parent 1:2 pfifo limit 0" in plan.bridge_port(2)
    cut = ["europe-west1"]
    drop = (
        "filter add dev ncd4194304h{} parent 1: protocol ip pref 1 u32 match ip src {} flowid 1:2"
    )
    assert plan.partition(0, cut)[1:] == [drop.format(0, "198.18.18.0/24")]
    assert plan.partition(1, cut)[1:] == [drop.format(1, "198.18.18.0/24")]
    assert plan.partition(2, cut)[1:] == [
        drop.format(2, s) for s in ("198.18.16.0/24", "198.18.17.0/24")
    ]
    for i in range(3):  # healing: the partition filters go, nothing else
        heal = f"filter del dev ncd4194304h{i} parent 1: protocol ip pref 1"
        assert plan.partition(i, []) == [heal]


needs_netns = pytest.mark.skipif(
    not (probe := netns.probe()).ok, reason=f"network namespaces not usable here: {probe.why}"
)


@needs_netns
def test_sweep_removes_the_network_of_a_dead_demo_only() -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    mine = [netns.run_prefix(dead.pid), netns.run_prefix(alive.pid)]
    try:
        for prefix in mine:
            subprocess.run(["ip", "netns", "add", f"{prefix}-r1"], check=True)
            subprocess.run(["ip", "link", "add", f"{prefix}br", "type", "bridge"], check=True)
        swept = netns.sweep()
        assert netns.run_prefix(dead.pid) in swept
        assert netns.run_prefix(alive.pid) not in swept
        assert netns.names_with(netns.run_prefix(dead.pid)) == ([], [])
        assert netns.names_with(netns.run_prefix(alive.pid)) == (
            [f"{mine[1]}-r1"],
            [f"{mine[1]}br"],
        )
    finally:
        alive.kill()
        alive.wait()
        for prefix in mine:
            netns.teardown(prefix)
        assert netns.names_with(mine[0]) == netns.names_with(mine[1]) == ([], [])


@needs_netns
def test_a_prefix_never_matches_a_longer_pid() -> None:
    a, b = "ncd900001", "ncd90000"  # b is a's prefix as a string
    try:
        subprocess.run(["ip", "netns", "add", f"{a}-r1"], check=True)
        assert netns.names_with(b) == ([], [])
        netns.teardown(b)
        assert netns.names_with(a) == ([f"{a}-r1"], [])
    finally:
        netns.teardown(a)


@pytest.mark.parametrize(
    ("found", "mode", "delay", "says"),
    [
        (netns.Probe(True, True, ""), "netns", "netem", "network: netns + tc netem (root)"),
        (
            netns.Probe(True, False, "this kernel has no tc netem: x", tun=True),
            "netns",
            "wan",
            "network: netns + userspace WAN (root; this kernel has no tc netem: x)",
        ),
        (
            netns.Probe(True, False, "no netem; no TUN device either: y"),
            "netns",
            "transport",
            "partitions by tc; delay = RTT/2 on each node's federation messages (no netem; no TUN",
        ),
        (
            netns.Probe(False, False, "not root"),
            "transport",
            "transport",
            "network: in-transport delay (not root)",
        ),
    ],
)
def test_auto_picks_the_most_realistic_network_that_works_and_says_why(
    monkeypatch: pytest.MonkeyPatch, found: netns.Probe, mode: str, delay: str, says: str
) -> None:
    from novacron_core.demo import cli

    monkeypatch.setattr(cli, "probe", lambda: found)
    got_mode, got_delay, line = cli._network_mode("auto")
    assert (got_mode, got_delay) == (mode, delay)
    assert says in line


def test_asked_for_netns_where_it_cannot_work_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import click

    from novacron_core.demo import cli

    monkeypatch.setattr(cli, "probe", lambda: netns.Probe(False, False, "not root"))
    with pytest.raises(click.ClickException, match="--network netns is not possible here: not"):
        cli._network_mode("netns")
    assert cli._network_mode("transport")[0] == "transport"


def _route_type(ns: str, addr: str) -> str:
    out = subprocess.run(["ip", "-n", ns, "route", "get", addr], capture_output=True, text=True)
    text = (out.stdout + out.stderr).strip()
    return "cut" if ("blackhole" in text or "Invalid argument" in text) else "up"


@needs_netns
def test_cut_link_cuts_one_pair_both_ways_and_nothing_else_until_restored() -> None:
    """The agents' chapter cuts one WAN link (not a partition): only that pair loses each
    other, the third region still reaches both, and restoring leaves no trace."""
    probe = netns.probe()
    delay = probe.delay if probe.delay in ("netem", "wan") else "transport"
    with netns.RegionNetwork(REGIONS, demo_rtt(list(REGIONS)), delay, 2) as net:
        plan = net.plan
        assert plan is not None
        east, west = 0, 1  # europe-west1 (2) keeps both of its links

        def state() -> dict[tuple[int, int], set[str]]:
            return {
                (i, k): {_route_type(plan.ns(i), plan.node_addr(k, j)) for j in range(2)}
                for i in range(3)
                for k in range(3)
                if i != k
            }

        assert set().union(*state().values()) == {"up"}
        net.cut_link(REGIONS[east], REGIONS[west])
        cut = state()
        assert cut[(east, west)] == cut[(west, east)] == {"cut"}
        assert {p for p, v in cut.items() if v != {"up"}} == {(east, west), (west, east)}
        net.cut_link(REGIONS[east], REGIONS[west], cut=False)
        assert set().union(*state().values()) == {"up"}
