"""Topology smoothing, route tables and their failover, ECMP splits, QoS classes."""

from __future__ import annotations

import itertools
import time

import networkx as nx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from novacron_core.routing.ecmp import make_split, wecmp
from novacron_core.routing.graph import Graph
from novacron_core.routing.qos import QoS
from novacron_core.routing.table import Router, compute_routes
from novacron_core.routing.topology import Region, Topology, TopologyError, haversine_km
from tests.routing.oracle import to_nx, wan, zoo


def test_rtt_smoothing_follows_rfc6298():
    t = Topology()
    t.add_link("a", "b", 50.0)
    t.observe_rtt("a", "b", 100.0, now=1.0)  # first sample: srtt = R, rttvar = R/2
    link = t.link("a", "b")
    assert link.rtt_ms == 100.0
    assert link.jitter_ms == 25.0  # rttvar = R/2 of the RTT, kept per one-way direction: R/4
    t.observe_rtt("b", "a", 180.0, now=2.0)
    # srtt = 7/8*100 + 1/8*180 = 110; rttvar = 3/4*25 + 1/4*|100-180| = 38.75
    assert link.rtt_ms == pytest.approx(110.0)
    assert link.jitter_ms == pytest.approx(38.75)


def test_loss_and_bandwidth_are_smoothed_and_versions_move_only_on_significant_drift():
    t = Topology()
    t.add_link("a", "b", 10.0, bandwidth_mbps=1000)
    t.mark_routed()
    v = t.version
    t.observe_rtt("a", "b", 20.4, now=1.0)  # 10.2 ms one way: 2% drift, not significant
    t.observe_rtt("a", "b", 20.4, now=1.1)
    assert t.version == v
    t.observe_loss("a", "b", True, now=1.2)  # 1/16 lost: significant (from 0)
    assert t.version == v + 1
    assert t.link("a", "b").loss == pytest.approx(1 / 16, rel=0.01)
    t.observe_bandwidth("a", "b", 200.0, now=1.3)  # 1000 -> 800: significant
    assert t.link("a", "b").bandwidth_mbps == pytest.approx(800.0)
    assert t.version == v + 2
    assert t.set_up("a", "b", False, now=2.0)
    assert not t.set_up("a", "b", False, now=2.1)
    assert t.version == v + 3


def test_bad_measurements_and_links_name_the_field():
    t = Topology()
    with pytest.raises(TopologyError, match="latency_ms"):
        t.add_link("a", "b", -1.0)
    with pytest.raises(TopologyError, match="loss"):
        t.add_link("a", "b", 1.0, loss=2.0)
    with pytest.raises(TopologyError, match="two different"):
        t.add_link("a", "a", 1.0)
    with pytest.raises(TopologyError, match="no coordinates"):
        t.add_link("x", "y")
    with pytest.raises(TopologyError, match="rtt_ms"):
        t.observe_rtt("a", "b", float("nan"), 0.0)


def test_latency_from_coordinates_is_great_circle_over_fibre():
    t = Topology()
    t.add_region(Region("eu", 50.11, 8.68))  # Frankfurt
    t.add_region(Region("us", 40.71, -74.01))  # New York
    t.ensure_member("f", "eu")
    t.ensure_member("n", "us")
    link = t.add_link("f", "n")
    km = haversine_km(50.11, 8.68, 40.71, -74.01)
    assert 6150 < km < 6250
    assert link.latency_ms == pytest.approx(km / 200.0)


def test_reroute_after_a_cut_uses_a_precomputed_disjoint_backup_without_graph_work():
    t = Topology.from_links(
        [("a", "b", 30), ("a", "c", 20), ("c", "b", 20), ("a", "d", 50), ("d", "b", 50)]
    )
    router = Router(t, "a")
    router.install(router.compute(router.snapshot()))
    assert router.table.path("b") == ("a", "b")
    start = time.perf_counter()
    changes = router.link_state("a", "b", False, now=5.0)
    took = time.perf_counter() - start
    assert {c.new for c in changes} == {("a", "c", "b")}
    assert all(c.old == ("a", "b") for c in changes)
    assert router.table.path("b", QoS.CRITICAL) == ("a", "c", "b")
    assert took < 0.01
    assert router.due  # the background recomputation is now due
    assert router.link_state("c", "b", False, now=5.1)  # second cut: the third path
    assert router.table.path("b") == ("a", "d", "b")
    router.link_state("d", "b", False, now=5.2)
    assert router.table.path("b") is None  # every candidate cut: no route, said so
    router.link_state("a", "b", True, now=6.0)  # one back: a route with none takes it
    assert router.table.path("b") == ("a", "b")
    router.install(router.compute(router.snapshot()))
    assert not router.due
    assert router.table.path("b") == ("a", "b")


@settings(max_examples=80, deadline=None)
@given(wan(max_nodes=9), st.data())
def test_after_any_single_cut_routes_avoid_it_and_exist_whenever_the_graph_allows(topo, data):
    g, ref = Graph.of(topo), to_nx(topo)
    src = data.draw(st.sampled_from(g.names))
    table = compute_routes(g, src, [QoS.CRITICAL])
    a, b = data.draw(st.sampled_from(sorted(ref.edges())))
    table.link_down(a, b)
    cut = ref.copy()
    cut.remove_edge(a, b)
    for dst in g.names:
        if dst == src:
            continue
        path = table.path(dst)
        if path is None:
            # allowed only when the cut disconnected them (the backups are disjoint, so one
            # survives any single cut when two disjoint paths existed)
            assert nx.edge_connectivity(ref, src, dst) < 2
            continue
        assert (a, b) not in itertools.pairwise(path)
        assert (b, a) not in itertools.pairwise(path)
        assert all(cut.has_edge(x, y) for x, y in itertools.pairwise(path))


def test_qos_classes_map_to_dscp_and_preferences():
    assert [q.value for q in QoS] == ["critical", "high", "medium", "low", "best-effort"]
    assert [q.dscp for q in QoS] == [46, 34, 26, 10, 0]
    assert QoS.CRITICAL.tos == 0xB8
    assert QoS.parse("Best_Effort") is QoS.BEST_EFFORT
    with pytest.raises(ValueError, match="qos: one of critical"):
        QoS.parse("gold")
    # cheap and slow vs fast and dear: critical takes latency, low takes cost
    t = Topology()
    t.add_link("a", "b", 10.0, cost=10.0)
    t.add_link("a", "c", 30.0, cost=1.0)
    t.add_link("c", "b", 30.0, cost=1.0)
    table = compute_routes(Graph.of(t), "a")
    assert table.path("b", QoS.CRITICAL) == ("a", "b")
    assert table.path("b", QoS.LOW) == ("a", "c", "b")
    assert len(table.get("b", QoS.CRITICAL).candidates) == 2
    assert len(table.get("b", QoS.BEST_EFFORT).candidates) == 2


def test_wecmp_split_shares_follow_bottleneck_bandwidth_and_flows_stick():
    t = Topology()
    t.add_link("s", "x", 5, bandwidth_mbps=1000)
    t.add_link("x", "d", 5, bandwidth_mbps=1000)
    t.add_link("s", "y", 5, bandwidth_mbps=3000)
    t.add_link("y", "d", 5, bandwidth_mbps=3000)
    split = wecmp(Graph.of(t), "s", "d")
    assert set(split.paths) == {("s", "x", "d"), ("s", "y", "d")}
    shares = {p: split.share(i) for i, p in enumerate(split.paths)}
    assert shares[("s", "y", "d")] == pytest.approx(0.75, abs=1 / 128)
    flows = [f"10.0.0.{i}:{1000 + i}->10.1.0.1:443/tcp" for i in range(4000)]
    counts = {p: 0 for p in split.paths}
    for f in flows:
        counts[split.choose(f)] += 1
        assert split.choose(f) == split.choose(f)
    assert counts[("s", "y", "d")] / len(flows) == pytest.approx(0.75, abs=0.04)


@given(st.lists(st.floats(0.0, 100.0), min_size=1, max_size=8), st.integers(8, 256))
def test_split_buckets_are_within_one_of_the_exact_share(weights, buckets):
    if sum(weights) <= 0 or buckets < len(weights):
        return
    paths = [(f"p{i}",) for i in range(len(weights))]
    split = make_split(paths, weights, buckets)
    assert len(split.buckets) == buckets
    for i, w in enumerate(weights):
        assert abs(split.buckets.count(i) - buckets * w / sum(weights)) < 1.0 + 1e-9


def test_geant_route_table_has_backups_for_every_two_connected_pair():
    topo = zoo("Geant2012")
    g, ref = Graph.of(topo), to_nx(topo)
    src = g.names[0]
    table = compute_routes(g, src, [QoS.CRITICAL])
    for dst in g.names[1:]:
        r = table.get(dst, QoS.CRITICAL)
        assert r is not None
        assert len(r.candidates) >= min(4, nx.edge_connectivity(ref, src, dst))
