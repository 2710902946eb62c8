"""networkx views of our topologies, and brute-force references for what networkx lacks."""

from __future__ import annotations

import itertools
from pathlib import Path

import networkx as nx
import pytest
from hypothesis import strategies as st

from novacron_core.routing.topology import Topology

TOPOLOGIES = Path(__file__).resolve().parents[3] / "shared" / "data" / "topologies"
if not TOPOLOGIES.exists():  # the worktree layout (/work/wt/NAME) vs a clone beside shared/
    TOPOLOGIES = Path("/work/shared/data/topologies")


def zoo(name: str) -> Topology:
    from novacron_core.routing.zoo import load_graphml

    path = TOPOLOGIES / f"{name}.graphml"
    if not path.exists():
        pytest.skip(f"{path} is absent (the Internet Topology Zoo files live in shared/data)")
    return load_graphml(path)


def to_nx(topo: Topology) -> nx.Graph:
    g = nx.Graph()
    g.add_nodes_from(topo.nodes())
    for link in topo.up_links():
        g.add_edge(
            link.a,
            link.b,
            latency=link.latency_ms,
            bw=link.bandwidth_mbps,
            cost=link.cost,
            hops=1,
        )
    return g


def bottleneck_by_threshold(g: nx.Graph, src: str, dst: str) -> float:
    """The widest path's bottleneck by its definition: the largest bandwidth b such that
    src and dst stay connected using only links of at least b."""
    if src == dst:
        return float("inf")
    best = -1.0
    for b in sorted({d["bw"] for _, _, d in g.edges(data=True)}):
        sub = nx.Graph((u, v) for u, v, d in g.edges(data=True) if d["bw"] >= b)
        if src in sub and dst in sub and nx.has_path(sub, src, dst):
            best = b
    return best


def simple_path_costs(g: nx.Graph, src: str, dst: str, metrics: list[str]) -> list[tuple]:
    out = []
    for p in nx.all_simple_paths(g, src, dst):
        out.append(tuple(sum(g[a][b][m] for a, b in itertools.pairwise(p)) for m in metrics))
    return out


def pareto_front(points: list[tuple[float, float]]) -> set[tuple[float, float]]:
    return {p for p in points if not any(q[0] <= p[0] and q[1] <= p[1] and q != p for q in points)}


def min_cost_disjoint(g: nx.Graph, src: str, dst: str, k: int, weight: str) -> tuple[int, float]:
    """(number, least total weight) of up to k link-disjoint paths, as a min-cost flow."""
    m = min(k, nx.edge_connectivity(g, src, dst)) if src != dst else 0
    if m == 0:
        return 0, 0.0
    d = nx.DiGraph()
    for a, b, data in g.edges(data=True):
        d.add_edge(a, b, capacity=1, weight=data[weight])
        d.add_edge(b, a, capacity=1, weight=data[weight])
    d.nodes[src]["demand"] = -m
    d.nodes[dst]["demand"] = m
    cost = nx.min_cost_flow_cost(d)
    return m, float(cost)


@st.composite
def wan(draw: st.DrawFn, max_nodes: int = 9, connected: bool = True) -> Topology:
    """A random WAN: integer metrics (exact comparisons), a spanning tree plus extra links."""
    n = draw(st.integers(2, max_nodes))
    names = [f"r{i}" for i in range(n)]
    edges: set[tuple[int, int]] = set()
    if connected:
        for i in range(1, n):
            edges.add((draw(st.integers(0, i - 1)), i))
    extra = draw(st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)), max_size=2 * n))
    edges |= {(min(a, b), max(a, b)) for a, b in extra if a != b}
    topo = Topology()
    for a, b in sorted(edges):
        topo.add_link(
            names[a],
            names[b],
            float(draw(st.integers(1, 20))),
            bandwidth_mbps=float(draw(st.sampled_from([10, 100, 1000, 10000]))),
            cost=float(draw(st.integers(1, 5))),
        )
    for name in names:
        topo.ensure_member(name)
    return topo
