"""Path algorithms against networkx (and brute force where networkx has no such algorithm),
on random WANs and on real ones (GEANT 2012, Abilene)."""

from __future__ import annotations

import itertools

import networkx as nx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from novacron_core.routing.ecmp import ecmp
from novacron_core.routing.graph import Graph
from novacron_core.routing.paths import (
    NoPath,
    disjoint_paths,
    lexicographic_path,
    pareto_paths,
    weighted_path,
    widest_paths,
)
from tests.routing.oracle import (
    bottleneck_by_threshold,
    min_cost_disjoint,
    pareto_front,
    simple_path_costs,
    to_nx,
    wan,
    zoo,
)

FAST = settings(max_examples=120, deadline=None)


def _path_ok(g: nx.Graph, path: tuple[str, ...], src: str, dst: str) -> None:
    assert path[0] == src
    assert path[-1] == dst
    assert len(set(path)) == len(path), f"not a simple path: {path}"
    for a, b in itertools.pairwise(path):
        assert g.has_edge(a, b), f"{a}-{b} is not a link"


@FAST
@given(wan(max_nodes=12, connected=False))
def test_shortest_path_lengths_equal_networkx(topo):
    g, ref = Graph.of(topo), to_nx(topo)
    for src in g.names:
        ours = g.shortest_paths(src, "latency")
        theirs = nx.single_source_dijkstra_path_length(ref, src, weight="latency")
        assert {d: v[0] for d, v in ours.items()} == pytest.approx(theirs)
        for dst, (dist, path) in ours.items():
            _path_ok(ref, path, src, dst)
            assert nx.path_weight(ref, list(path), "latency") == pytest.approx(dist)


@FAST
@given(wan(max_nodes=10, connected=False))
def test_widest_path_bottlenecks_equal_the_threshold_definition(topo):
    g, ref = Graph.of(topo), to_nx(topo)
    for src in g.names:
        ours = widest_paths(g, src)
        reachable = nx.node_connected_component(ref, src)
        assert set(ours) == reachable
        for dst, (width, path) in ours.items():
            _path_ok(ref, path, src, dst)
            assert width == bottleneck_by_threshold(ref, src, dst)
            if len(path) > 1:
                assert width == min(ref[a][b]["bw"] for a, b in itertools.pairwise(path))


@FAST
@given(wan(max_nodes=7), st.data())
def test_lexicographic_and_weighted_paths_equal_brute_force(topo, data):
    g, ref = Graph.of(topo), to_nx(topo)
    src, dst = data.draw(st.sampled_from(g.names)), data.draw(st.sampled_from(g.names))
    if src == dst:
        return
    costs = simple_path_costs(ref, src, dst, ["cost", "latency"])
    best, path = lexicographic_path(g, src, dst, ["cost", "latency"])
    assert best == min(costs)
    _path_ok(ref, path, src, dst)
    wsum, wpath = weighted_path(g, src, dst, {"latency": 1.0, "cost": 10.0})
    assert wsum == pytest.approx(min(lat + 10 * c for c, lat in costs))
    _path_ok(ref, wpath, src, dst)


@FAST
@given(wan(max_nodes=7), st.data())
def test_pareto_set_equals_brute_force(topo, data):
    g, ref = Graph.of(topo), to_nx(topo)
    src, dst = data.draw(st.sampled_from(g.names)), data.draw(st.sampled_from(g.names))
    if src == dst:
        return
    ours = pareto_paths(g, src, dst, "latency", "cost")
    front = pareto_front(simple_path_costs(ref, src, dst, ["latency", "cost"]))
    assert {(a, b) for a, b, _ in ours} == front
    for a, b, path in ours:
        _path_ok(ref, path, src, dst)
        assert nx.path_weight(ref, list(path), "latency") == a
        assert nx.path_weight(ref, list(path), "cost") == b
    # sorted by the first objective, so the second strictly decreases
    assert [x[1] for x in ours] == sorted((x[1] for x in ours), reverse=True)


def _check_disjoint(g: Graph, ref: nx.Graph, src: str, dst: str, k: int, tol: float = 1e-9):
    found = disjoint_paths(g, src, dst, k, "latency")
    count, best = min_cost_disjoint(ref, src, dst, k, "latency")
    assert len(found) == count
    used: set[frozenset[str]] = set()
    for weight, path in found:
        _path_ok(ref, path, src, dst)
        assert nx.path_weight(ref, list(path), "latency") == pytest.approx(weight)
        links = {frozenset(e) for e in itertools.pairwise(path)}
        assert used.isdisjoint(links), "paths share a link"
        used |= links
    assert sum(w for w, _ in found) == pytest.approx(best, abs=tol)
    assert len(found) == min(k, len(list(nx.edge_disjoint_paths(ref, src, dst))))
    return found


@FAST
@given(wan(max_nodes=10), st.data(), st.integers(1, 4))
def test_disjoint_paths_are_the_least_total_set_networkx_flow_finds(topo, data, k):
    g, ref = Graph.of(topo), to_nx(topo)
    src = data.draw(st.sampled_from(g.names))
    dst = data.draw(st.sampled_from([n for n in g.names if n != src]))
    _check_disjoint(g, ref, src, dst, k)


def test_disjoint_paths_escape_the_trap_topology():
    """The shortest path s-a-b-t blocks every partner; the least pair shares none of it."""
    from novacron_core.routing.topology import Topology

    topo = Topology.from_links(
        [
            ("s", "a", 1),
            ("a", "b", 1),
            ("b", "t", 1),
            ("s", "c", 2),
            ("c", "b", 2),
            ("a", "d", 2),
            ("d", "t", 2),
        ]
    )
    g = Graph.of(topo)
    found = disjoint_paths(g, "s", "t", 2)
    assert sorted(p for _, p in found) == [("s", "a", "d", "t"), ("s", "c", "b", "t")]
    assert sum(w for w, _ in found) == 10


@FAST
@given(wan(max_nodes=9), st.data())
def test_ecmp_set_equals_networkx_all_shortest_paths(topo, data):
    g, ref = Graph.of(topo), to_nx(topo)
    src = data.draw(st.sampled_from(g.names))
    dst = data.draw(st.sampled_from([n for n in g.names if n != src]))
    split = ecmp(g, src, dst, "hops", max_paths=64)
    theirs = {tuple(p) for p in nx.all_shortest_paths(ref, src, dst, weight="hops")}
    assert set(split.paths) == theirs


def test_no_path_is_an_error_naming_both_ends():
    from novacron_core.routing.topology import Topology

    topo = Topology.from_links([("a", "b", 1), ("c", "d", 1)])
    g = Graph.of(topo)
    with pytest.raises(NoPath, match="a -> c"):
        lexicographic_path(g, "a", "c", ["latency"])
    assert disjoint_paths(g, "a", "c", 3) == []
    assert "c" not in widest_paths(g, "a")


# ---------------------------------------------------------------- real WANs


@pytest.mark.parametrize("name", ["Geant2012", "Abilene"])
def test_real_wan_shortest_and_widest_equal_networkx(name):
    topo = zoo(name)
    g, ref = Graph.of(topo), to_nx(topo)
    for src in g.names:
        ours = g.shortest_paths(src, "latency")
        theirs = nx.single_source_dijkstra_path_length(ref, src, weight="latency")
        assert {d: v[0] for d, v in ours.items()} == pytest.approx(theirs)
    for src in g.names[:: max(1, len(g.names) // 6)]:
        for dst, (width, _) in widest_paths(g, src).items():
            assert width == bottleneck_by_threshold(ref, src, dst)


@pytest.mark.parametrize("name", ["Geant2012", "Abilene"])
def test_real_wan_disjoint_paths_equal_networkx_min_cost_flow(name):
    topo = zoo(name)
    # networkx's network simplex wants integers: the reference runs on microseconds
    for link in topo.links():
        link.latency_ms = round(link.latency_ms * 1000) / 1000
    g = Graph.of(topo)
    ref = to_nx(topo)
    for _, _, d in ref.edges(data=True):
        d["latency"] = round(d["latency"] * 1000)
    names = g.names
    for src, dst in list(itertools.combinations(names, 2))[:: max(1, len(names) // 3)]:
        found = disjoint_paths(g, src, dst, 4, "latency")
        count, best_us = min_cost_disjoint(ref, src, dst, 4, "latency")
        assert len(found) == count
        assert sum(w for w, _ in found) * 1000 == pytest.approx(best_us, abs=0.5)
