"""Path algorithms no maintained graph library offers (rustworkx and networkx have neither):
widest (max-bottleneck) paths, lexicographic and bi-objective Pareto routing, and k
link-disjoint paths of least total weight (Bhandari's / Suurballe's algorithm).

Weighted-sum routing is just a shortest path on the combined weight, so it goes to rustworkx
(``weighted_path``). All functions take a :class:`Graph` snapshot and names; ties are broken
deterministically (fewer hops, then names) so two agents with the same view pick the same path.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Mapping, Sequence

from novacron_core.routing.graph import Graph, Metric, Path, link_weight
from novacron_core.routing.topology import Link


class NoPath(LookupError):
    pass


# ---------------------------------------------------------------- widest path


def widest_paths(g: Graph, src: str) -> dict[str, tuple[float, Path]]:
    """Single-source widest paths: destination -> (bottleneck bandwidth, path).

    Dijkstra with (min, max) in place of (+, min): the label of a node is the best bottleneck
    of any path to it, settled in decreasing order. Among equally wide paths the one with
    fewer hops wins (then the smaller name), which keeps the answer stable."""
    s = g.index[src]
    n = len(g.names)
    width = [-1.0] * n
    hops = [0] * n
    prev = [-1] * n
    width[s] = float("inf")
    heap: list[tuple[float, int, int]] = [(-width[s], 0, s)]
    done = [False] * n
    bw = [link.bandwidth_mbps for link in g.links]
    adj = g.adj
    while heap:
        negw, h, u = heapq.heappop(heap)
        if done[u]:
            continue
        done[u] = True
        wu = -negw
        for v, e in adj[u]:
            if done[v]:
                continue
            cand = wu if wu < bw[e] else bw[e]
            if cand > width[v] or (cand == width[v] and h + 1 < hops[v]):
                width[v], hops[v], prev[v] = cand, h + 1, u
                heapq.heappush(heap, (-cand, h + 1, v))
    out: dict[str, tuple[float, Path]] = {}
    for t in range(n):
        if width[t] < 0:
            continue
        path = [t]
        while path[-1] != s:
            path.append(prev[path[-1]])
        out[g.names[t]] = (width[t], tuple(g.names[i] for i in reversed(path)))
    return out


def widest_path(g: Graph, src: str, dst: str) -> tuple[float, Path]:
    found = widest_paths(g, src).get(dst)
    if found is None:
        raise NoPath(f"no path {src} -> {dst}")
    return found


# ---------------------------------------------------------------- several objectives


def weighted_path(
    g: Graph, src: str, dst: str, weights: Mapping[Metric, float]
) -> tuple[float, Path]:
    """Least sum of ``coefficient * metric`` (a scalarised multi-objective route)."""
    fns = [(c, link_weight(m)) for m, c in weights.items() if c]
    if not fns:
        raise ValueError("weights: at least one metric needs a non-zero coefficient")
    found = g.shortest_path(src, dst, lambda link: sum(c * f(link) for c, f in fns))
    if found is None:
        raise NoPath(f"no path {src} -> {dst}")
    return found


def lexicographic_path(
    g: Graph, src: str, dst: str, order: Sequence[Metric]
) -> tuple[tuple[float, ...], Path]:
    """The path least in the first metric, then (among those) the second, and so on.

    Dijkstra over cost tuples (additive metrics keep the order monotone). Scaling the metrics
    into one number would be faster but silently wrong once magnitudes overlap."""
    s, t = g.index[src], g.index[dst]
    best, prev, done = _lex_search(g, s, order, t)
    if t not in done:
        raise NoPath(f"no path {src} -> {dst}")
    return best[t], _unwind(g, prev, s, t)


def lexicographic_tree(
    g: Graph, src: str, order: Sequence[Metric]
) -> dict[str, tuple[tuple[float, ...], Path]]:
    """Lexicographic paths from ``src`` to every reachable node, in one search."""
    s = g.index[src]
    best, prev, done = _lex_search(g, s, order, None)
    return {g.names[t]: (best[t], _unwind(g, prev, s, t)) for t in done}


def _lex_search(
    g: Graph, s: int, order: Sequence[Metric], target: int | None
) -> tuple[dict[int, tuple[float, ...]], dict[int, int], set[int]]:
    if not order:
        raise ValueError("order: name at least one metric")
    fns = [link_weight(m) for m in order]
    costs = [tuple(f(link) for f in fns) for link in g.links]
    zero = tuple(0.0 for _ in order)
    best: dict[int, tuple[float, ...]] = {s: zero}
    prev: dict[int, int] = {}
    heap: list[tuple[tuple[float, ...], int, int]] = [(zero, 0, s)]
    done: set[int] = set()
    while heap:
        c, h, u = heapq.heappop(heap)
        if u in done:
            continue
        done.add(u)
        if u == target:
            break
        for v, e in g.adj[u]:
            if v in done:
                continue
            nc = tuple(x + y for x, y in zip(c, costs[e], strict=True))
            if v not in best or nc < best[v]:
                best[v], prev[v] = nc, u
                heapq.heappush(heap, (nc, h + 1, v))
    return best, prev, done


def pareto_paths(
    g: Graph, src: str, dst: str, first: Metric, second: Metric
) -> list[tuple[float, float, Path]]:
    """Every Pareto-optimal (first, second) cost pair from src to dst, with one path each,
    sorted by the first metric (so the second decreases along the list).

    Martins' label-setting algorithm: labels leave a heap in lexicographic order, and a label
    is kept at a node only if no kept label there dominates it; with two objectives and labels
    in lexicographic order, a new label is undominated iff its second cost is below the last
    kept one's. With non-negative costs a label that loops back is dominated, so the paths
    come out simple."""
    f1, f2 = link_weight(first), link_weight(second)
    c1 = [f1(link) for link in g.links]
    c2 = [f2(link) for link in g.links]
    s, t = g.index[src], g.index[dst]
    if s == t:
        return [(0.0, 0.0, (src,))]
    # label: (cost1, cost2, node, parent label id); kept[node] = best cost2 settled there
    labels: list[tuple[float, float, int, int]] = []
    kept_best = [float("inf")] * len(g.names)
    heap: list[tuple[float, float, int]] = []
    labels.append((0.0, 0.0, s, -1))
    heap.append((0.0, 0.0, 0))
    results: list[int] = []
    while heap:
        a, b, lid = heapq.heappop(heap)
        node = labels[lid][2]
        if b >= kept_best[node]:
            continue  # dominated by a label settled earlier (first <=, second <=)
        kept_best[node] = b
        if node == t:
            results.append(lid)
            continue
        for v, e in g.adj[node]:
            na, nb = a + c1[e], b + c2[e]
            if nb >= kept_best[v] or nb >= kept_best[t]:
                continue
            labels.append((na, nb, v, lid))
            heapq.heappush(heap, (na, nb, len(labels) - 1))
    out = []
    for lid in results:
        path = [g.names[n] for n in reversed(list(_label_chain(labels, lid)))]
        out.append((labels[lid][0], labels[lid][1], tuple(path)))
    return out


def _label_chain(labels: list[tuple[float, float, int, int]], lid: int) -> list[int]:
    chain = []
    while lid >= 0:
        chain.append(labels[lid][2])
        lid = labels[lid][3]
    return chain


# ---------------------------------------------------------------- k link-disjoint paths


def disjoint_paths(
    g: Graph,
    src: str,
    dst: str,
    k: int,
    metric: Metric | Callable[[Link], float] = "latency",
) -> list[tuple[float, Path]]:
    """Up to ``k`` pairwise link-disjoint paths src -> dst whose total weight is least
    (Bhandari's / Suurballe's algorithm: successive shortest augmenting paths in the residual
    graph, Dijkstra on reduced costs with Johnson potentials). Sorted by weight, so the first
    is the primary. Fewer come back when the graph has fewer link-disjoint paths.

    The least total is not always the shortest path plus its best disjoint partner: the
    shortest path can block every partner (the "trap" topology), and augmenting along a
    residual path that cancels part of it is what finds the pair."""
    if k < 1:
        raise ValueError(f"k must be >= 1, not {k}")
    s, t = g.index[src], g.index[dst]
    if s == t:
        return [(0.0, (src,))]
    w = g.weights(metric) if isinstance(metric, str) else [metric(lk) for lk in g.links]
    n = len(g.names)
    # flow[e] in {-1, 0, 1}: +1 carried a -> b (a = the lower index end), -1 carried b -> a
    ends = [(g.index[lk.a], g.index[lk.b]) for lk in g.links]
    flow = [0] * len(g.links)
    pot = [0.0] * n
    found = 0
    for _ in range(k):
        dist, via = _residual_dijkstra(g, s, w, ends, flow, pot)
        if dist[t] == float("inf"):
            break
        # augment along the path found (walk back from t)
        v = t
        while v != s:
            u, e = via[v]
            a, _ = ends[e]
            flow[e] += 1 if u == a else -1
            v = u
        for i in range(n):
            if dist[i] < float("inf"):
                pot[i] += dist[i]
        found += 1
    return _decompose(g, s, t, w, ends, flow, found)


def _residual_dijkstra(
    g: Graph,
    s: int,
    w: list[float],
    ends: list[tuple[int, int]],
    flow: list[int],
    pot: list[float],
) -> tuple[list[float], list[tuple[int, int]]]:
    n = len(g.names)
    inf = float("inf")
    dist = [inf] * n
    via: list[tuple[int, int]] = [(-1, -1)] * n
    dist[s] = 0.0
    heap = [(0.0, s)]
    while heap:
        d, u = heapq.heappop(heap)
        if d > dist[u]:
            continue
        for v, e in g.adj[u]:
            a, _ = ends[e]
            forward = 1 if u == a else -1  # direction u -> v in the edge's orientation
            f = flow[e]
            if f == forward:
                continue  # this direction is used: only the opposite remains
            # using u -> v against existing flow (f == -forward) cancels it: weight -w
            cost = -w[e] if f == -forward else w[e]
            nd = d + cost + pot[u] - pot[v]
            if nd < dist[v] - 1e-12:
                dist[v] = nd
                via[v] = (u, e)
                heapq.heappush(heap, (nd, v))
    # back to real distances for the potentials' update
    return [d + pot[i] - pot[s] if d < inf else inf for i, d in enumerate(dist)], via


def _decompose(
    g: Graph,
    s: int,
    t: int,
    w: list[float],
    ends: list[tuple[int, int]],
    flow: list[int],
    count: int,
) -> list[tuple[float, Path]]:
    out_arcs: dict[int, list[tuple[int, int]]] = {}
    for e, f in enumerate(flow):
        if f == 0:
            continue
        a, b = ends[e]
        u, v = (a, b) if f > 0 else (b, a)
        out_arcs.setdefault(u, []).append((v, e))
    for arcs in out_arcs.values():
        arcs.sort()
    paths: list[tuple[float, Path]] = []
    for _ in range(count):
        node, total, seq, seen = s, 0.0, [s], {s: 0}
        while node != t:
            v, e = out_arcs[node].pop(0)
            total += w[e]
            if v in seen:  # a zero-weight cycle of flow: cut it out of this path
                cut = seen[v]
                for x in seq[cut + 1 :]:
                    seen.pop(x, None)
                seq = seq[: cut + 1]
                total = sum(w[g.edge_between(g.names[x], g.names[y]) or 0] for x, y in _pairs(seq))
            else:
                seen[v] = len(seq)
                seq.append(v)
            node = v
        paths.append((total, tuple(g.names[i] for i in seq)))
    paths.sort(key=lambda p: (p[0], len(p[1]), p[1]))
    return paths


def _pairs(seq: list[int]) -> list[tuple[int, int]]:
    return list(itertools.pairwise(seq))


def _unwind(g: Graph, prev: dict[int, int], s: int, t: int) -> Path:
    path = [t]
    while path[-1] != s:
        path.append(prev[path[-1]])
    return tuple(g.names[i] for i in reversed(path))
