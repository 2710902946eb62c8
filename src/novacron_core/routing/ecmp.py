"""ECMP and weighted ECMP: spread flows over several paths, each flow pinned to one path.

A split is a list of (path, weight). Flows are mapped to paths through a table of buckets
(as WCMP does in switch ASICs): each path owns a number of buckets proportional to its
weight (largest remainders), and a flow's key hashes to one bucket, so a flow never moves
while the split is unchanged, and a path's share of flows tends to its share of buckets.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from novacron_core.routing.graph import Graph, Metric, Path

DEFAULT_BUCKETS = 128


@dataclass(frozen=True)
class Split:
    paths: tuple[Path, ...]
    weights: tuple[float, ...]  # normalised to sum 1
    buckets: tuple[int, ...]  # bucket -> index into paths

    def share(self, i: int) -> float:
        return self.buckets.count(i) / len(self.buckets)

    def choose(self, flow_key: bytes | str) -> Path:
        """The path of one flow (e.g. its 5-tuple); stable for the split's lifetime."""
        raw = flow_key.encode() if isinstance(flow_key, str) else flow_key
        h = int.from_bytes(hashlib.blake2b(raw, digest_size=8).digest(), "big")
        return self.paths[self.buckets[h % len(self.buckets)]]

    def as_dict(self) -> dict[str, object]:
        return {
            "paths": [list(p) for p in self.paths],
            "weights": list(self.weights),
            "buckets": [self.buckets.count(i) for i in range(len(self.paths))],
        }


def make_split(
    paths: Sequence[Path], weights: Sequence[float], buckets: int = DEFAULT_BUCKETS
) -> Split:
    if not paths:
        raise ValueError("a split needs at least one path")
    if len(paths) != len(weights):
        raise ValueError("one weight per path")
    if any(w < 0 for w in weights) or sum(weights) <= 0:
        raise ValueError("weights must be >= 0 with a positive sum")
    if buckets < len(paths):
        raise ValueError(f"buckets ({buckets}) must be at least the number of paths")
    total = float(sum(weights))
    norm = tuple(w / total for w in weights)
    exact = [w * buckets for w in norm]
    counts = [int(x) for x in exact]
    # largest remainder; ties to the earlier (better) path
    order = sorted(range(len(paths)), key=lambda i: (-(exact[i] - counts[i]), i))
    for i in order[: buckets - sum(counts)]:
        counts[i] += 1
    # interleave the buckets so that a resize of the table moves few flows' neighbours
    table: list[int] = []
    credit = [0.0] * len(paths)
    for _ in range(buckets):
        for i in range(len(paths)):
            credit[i] += counts[i]
        i = max(range(len(paths)), key=lambda j: (credit[j], -j))
        credit[i] -= buckets
        table.append(i)
    return Split(tuple(paths), norm, tuple(table))


def ecmp(g: Graph, src: str, dst: str, metric: Metric = "latency", max_paths: int = 8) -> Split:
    """Equal split over every equal-cost shortest path (at most ``max_paths``)."""
    paths = g.equal_cost_paths(src, dst, metric)[:max_paths]
    if not paths:
        raise LookupError(f"no path {src} -> {dst}")
    return make_split(paths, [1.0] * len(paths))


def wecmp(g: Graph, src: str, dst: str, metric: Metric = "latency", max_paths: int = 8) -> Split:
    """Weighted split over the equal-cost paths, each in proportion to its bottleneck
    bandwidth (what it can carry), so a thin path is not given as many flows as a fat one."""
    paths = g.equal_cost_paths(src, dst, metric)[:max_paths]
    if not paths:
        raise LookupError(f"no path {src} -> {dst}")
    caps = [g.bottleneck(p) if len(p) > 1 else 1.0 for p in paths]
    return make_split(paths, caps)
