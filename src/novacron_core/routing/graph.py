"""An immutable snapshot of a topology's usable links, in the shapes the algorithms want.

Shortest paths, equal-cost path sets and k-shortest lengths come from rustworkx (a maintained
Rust graph library); the algorithms rustworkx lacks (``paths.py``) walk the plain adjacency
lists kept here, indexed by integers so the Python loops stay tight.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

import rustworkx as rx

from novacron_core.routing.topology import Link, Topology, link_key

Metric = Literal["latency", "cost", "hops", "loss", "jitter"]
METRICS: tuple[Metric, ...] = ("latency", "cost", "hops", "loss", "jitter")
Path = tuple[str, ...]


def link_weight(metric: Metric) -> Callable[[Link], float]:
    if metric == "latency":
        return lambda link: link.latency_ms
    if metric == "cost":
        return lambda link: link.cost
    if metric == "hops":
        return lambda link: 1.0
    if metric == "loss":  # additive form of "probability the packet survives every hop"
        return lambda link: -_log1m(link.loss)
    if metric == "jitter":
        return lambda link: link.jitter_ms
    raise ValueError(f"metric must be one of {', '.join(METRICS)}, not {metric!r}")


def _log1m(p: float) -> float:
    return math.log1p(-min(p, 0.999999))


@dataclass(frozen=True, eq=False)
class Graph:
    names: tuple[str, ...]
    index: dict[str, int]
    links: tuple[Link, ...]  # by edge index (copies: the snapshot does not move)
    adj: tuple[tuple[tuple[int, int], ...], ...]  # node -> ((neighbour, edge), ...)
    rx_graph: rx.PyGraph
    version: int
    _cache: dict[str, rx.PyGraph] = field(default_factory=dict)

    @classmethod
    def of(cls, topo: Topology, *, include_down: bool = False) -> Graph:
        names = tuple(topo.nodes())
        index = {n: i for i, n in enumerate(names)}
        links: list[Link] = []
        adj: list[list[tuple[int, int]]] = [[] for _ in names]
        g: rx.PyGraph = rx.PyGraph(multigraph=False)
        g.add_nodes_from(names)
        for _, link in sorted((lk.key, lk) for lk in topo.links()):
            if not (link.up or include_down):
                continue
            e = len(links)
            links.append(replace(link))
            ia, ib = index[link.a], index[link.b]
            adj[ia].append((ib, e))
            adj[ib].append((ia, e))
            g.add_edge(ia, ib, e)
        return cls(names, index, tuple(links), tuple(tuple(a) for a in adj), g, topo.version)

    def edge_between(self, a: str, b: str) -> int | None:
        ia = self.index.get(a)
        ib = self.index.get(b)
        if ia is None or ib is None:
            return None
        for n, e in self.adj[ia]:
            if n == ib:
                return e
        return None

    def weights(self, metric: Metric | Callable[[Link], float]) -> list[float]:
        fn = link_weight(metric) if isinstance(metric, str) else metric
        return [fn(link) for link in self.links]

    def path_links(self, path: Sequence[str]) -> list[tuple[str, str]]:
        return [link_key(a, b) for a, b in itertools.pairwise(path)]

    def path_metric(self, path: Sequence[str], metric: Metric) -> float:
        w = link_weight(metric)
        total = 0.0
        for a, b in itertools.pairwise(path):
            e = self.edge_between(a, b)
            if e is None:
                raise KeyError(f"no usable link {a}-{b}")
            total += w(self.links[e])
        return total

    def bottleneck(self, path: Sequence[str]) -> float:
        """The smallest bandwidth along ``path`` (inf for a zero-hop path)."""
        out = float("inf")
        for a, b in itertools.pairwise(path):
            e = self.edge_between(a, b)
            if e is None:
                raise KeyError(f"no usable link {a}-{b}")
            out = min(out, self.links[e].bandwidth_mbps)
        return out

    # ------------------------------------------------------------ rustworkx does these

    def weighted(self, metric: Metric) -> rx.PyGraph:
        """A copy of the graph whose edge payloads are ``metric``'s weights (cached), so
        rustworkx reads each weight through the C-level ``float`` instead of a Python
        function per edge."""
        cache = self._cache
        if metric not in cache:
            h: rx.PyGraph = rx.PyGraph(multigraph=False)
            h.add_nodes_from(self.names)
            w = self.weights(metric)
            h.add_edges_from(
                [(self.index[lk.a], self.index[lk.b], w[e]) for e, lk in enumerate(self.links)]
            )
            cache[metric] = h
        return cache[metric]

    def shortest_paths(
        self, src: str, metric: Metric | Callable[[Link], float] = "latency"
    ) -> dict[str, tuple[float, Path]]:
        """Single-source shortest paths: destination -> (distance, path)."""
        s = self.index[src]
        if isinstance(metric, str):
            h = self.weighted(metric)
            paths = rx.dijkstra_shortest_paths(h, s, weight_fn=float)
            dists = rx.dijkstra_shortest_path_lengths(h, s, edge_cost_fn=float)
        else:
            fn = _edge_cost(self.weights(metric))
            paths = rx.dijkstra_shortest_paths(self.rx_graph, s, weight_fn=fn)
            dists = rx.dijkstra_shortest_path_lengths(self.rx_graph, s, edge_cost_fn=fn)
        name = self.names.__getitem__
        out: dict[str, tuple[float, Path]] = {src: (0.0, (src,))}
        for t, p in paths.items():
            out[name(t)] = (dists[t], tuple(map(name, p)))
        return out

    def shortest_path(
        self, src: str, dst: str, metric: Metric | Callable[[Link], float] = "latency"
    ) -> tuple[float, Path] | None:
        if src == dst:
            return 0.0, (src,)
        w = self.weights(metric)
        s, t = self.index[src], self.index[dst]
        fn = _edge_cost(w)
        paths = rx.dijkstra_shortest_paths(self.rx_graph, s, target=t, weight_fn=fn)
        if t not in paths:
            return None
        p = tuple(self.names[i] for i in paths[t])
        return self.path_metric(p, metric) if isinstance(metric, str) else _sum(w, self, p), p

    def equal_cost_paths(
        self, src: str, dst: str, metric: Metric | Callable[[Link], float] = "latency"
    ) -> list[Path]:
        """Every shortest path src -> dst (the ECMP set), as rustworkx enumerates them."""
        if src == dst:
            return [(src,)]
        w = self.weights(metric)
        found = rx.all_shortest_paths(
            self.rx_graph, self.index[src], self.index[dst], weight_fn=_edge_cost(w)
        )
        return sorted(tuple(self.names[i] for i in p) for p in found)


def _edge_cost(w: list[float]) -> Callable[[int], float]:
    return lambda e: w[e]


def _sum(w: list[float], g: Graph, p: Path) -> float:
    total = 0.0
    for a, b in itertools.pairwise(p):
        e = g.edge_between(a, b)
        assert e is not None
        total += w[e]
    return total
