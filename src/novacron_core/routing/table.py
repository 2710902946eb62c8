"""Routes with precomputed backups, and rerouting on a link failure without recomputing.

:func:`compute_routes` (slow: shortest and link-disjoint paths for every destination and
path preference) builds a :class:`RouteTable`; a table answers :meth:`RouteTable.link_down`
by moving each route that used the failed link to its first backup whose links are all up:
an index from link to routes makes that proportional to the routes hit, with no graph work.
The caller recomputes in the background (the table says it is stale) and swaps the new table
in; :class:`Router` does that bookkeeping.

The candidates of a route are the shortest path under the class's preference (what traffic
takes while everything is up) followed by the least-total set of up to ``k`` link-disjoint
paths (Bhandari): whichever single link fails, at least one disjoint path survives it.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from novacron_core.routing.graph import Graph, Metric, Path, link_weight
from novacron_core.routing.paths import disjoint_paths, lexicographic_tree
from novacron_core.routing.qos import QoS
from novacron_core.routing.topology import Link, Topology, link_key

LinkKey = tuple[str, str]


@dataclass
class Route:
    dst: str
    qos: QoS
    candidates: tuple[Path, ...]  # primary first, then backups
    active: int = 0  # index into candidates; -1: every candidate is cut
    links: tuple[frozenset[LinkKey], ...] = ()

    def __post_init__(self) -> None:
        if not self.links:
            self.links = tuple(
                frozenset(link_key(a, b) for a, b in itertools.pairwise(p)) for p in self.candidates
            )

    @property
    def path(self) -> Path | None:
        return self.candidates[self.active] if self.active >= 0 else None

    def as_dict(self) -> dict[str, object]:
        return {
            "dst": self.dst,
            "qos": self.qos.value,
            "dscp": self.qos.dscp,
            "path": list(self.path) if self.path else None,
            "active": self.active,
            "candidates": [list(p) for p in self.candidates],
        }


@dataclass(frozen=True)
class RouteChange:
    dst: str
    qos: QoS
    old: Path | None
    new: Path | None


@dataclass
class RouteTable:
    src: str
    version: int  # the topology version the table was computed from
    routes: dict[tuple[str, QoS], Route] = field(default_factory=dict)
    down: set[LinkKey] = field(default_factory=set)  # failed since computation
    _by_link: dict[LinkKey, list[Route]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for r in self.routes.values():
            self._index(r)

    def _index(self, r: Route) -> None:
        for links in r.links:
            for key in links:
                self._by_link.setdefault(key, []).append(r)

    def add(self, r: Route) -> None:
        self.routes[(r.dst, r.qos)] = r
        self._index(r)

    def get(self, dst: str, qos: QoS = QoS.CRITICAL) -> Route | None:
        return self.routes.get((dst, qos))

    def path(self, dst: str, qos: QoS = QoS.CRITICAL) -> Path | None:
        r = self.routes.get((dst, qos))
        return r.path if r is not None else None

    @property
    def stale(self) -> bool:
        return bool(self.down)

    def link_down(self, a: str, b: str) -> list[RouteChange]:
        """The hot path: switch every route on a-b to its first intact candidate."""
        key = link_key(a, b)
        if key in self.down or key not in self._by_link:
            return []  # no candidate uses it: nothing to move, nothing stale
        self.down.add(key)
        changes = []
        for r in self._by_link.get(key, ()):
            if r.active < 0 or key not in r.links[r.active]:
                continue
            old = r.candidates[r.active]
            r.active = self._first_intact(r)
            changes.append(RouteChange(r.dst, r.qos, old, r.path))
        return changes

    def link_up(self, a: str, b: str) -> list[RouteChange]:
        """A link back: a route with no intact candidate takes one again at once; routes
        that failed over stay on their backup until the next computation (no flapping)."""
        key = link_key(a, b)
        if key not in self.down:
            return []
        self.down.discard(key)
        changes = []
        for r in self._by_link.get(key, ()):
            if r.active < 0:
                r.active = self._first_intact(r)
                if r.active >= 0:
                    changes.append(RouteChange(r.dst, r.qos, None, r.path))
        return changes

    def _first_intact(self, r: Route) -> int:
        down = self.down
        for i, links in enumerate(r.links):
            if down.isdisjoint(links):
                return i
        return -1

    def as_dict(self) -> dict[str, object]:
        return {
            "src": self.src,
            "version": self.version,
            "down": [list(k) for k in sorted(self.down)],
            "routes": [r.as_dict() for _, r in sorted(self.routes.items(), key=_route_order)],
        }


def _route_order(item: tuple[tuple[str, QoS], Route]) -> tuple[str, int]:
    (dst, qos), _ = item
    return dst, qos.spec.rank


def compute_routes(
    g: Graph,
    src: str,
    classes: Iterable[QoS] = tuple(QoS),
    destinations: Iterable[str] | None = None,
) -> RouteTable:
    """Every route from ``src``: per destination and class, primary plus backups."""
    table = RouteTable(src, g.version)
    if src not in g.index:
        return table
    dsts = [d for d in (destinations or g.names) if d != src and d in g.index]
    classes = tuple(classes)
    # one search per distinct preference, with as many disjoint paths as the most demanding
    # class of that preference wants (any of them is a valid backup for the others)
    need: dict[tuple[Metric, ...], int] = {}
    for qos in classes:
        order = tuple(qos.spec.order)
        need[order] = max(need.get(order, 0), qos.spec.backups + 1)
    found: dict[tuple[Metric, ...], dict[str, tuple[Path, ...]]] = {}
    for order, k in need.items():
        tree = lexicographic_tree(g, src, order)
        lex = _lex_weight(g, order)
        found[order] = {}
        for dst in dsts:
            if dst not in tree:
                continue
            cands = [tree[dst][1]]
            if k > 1:
                for _, p in disjoint_paths(g, src, dst, k, lex):
                    if p not in cands:
                        cands.append(p)
            found[order][dst] = tuple(cands)
    for qos in classes:
        keep = qos.spec.backups + 1
        for dst, paths in found[tuple(qos.spec.order)].items():
            table.add(Route(dst, qos, paths[:keep]))
    return table


def _lex_weight(g: Graph, order: tuple[Metric, ...]) -> Callable[[Link], float]:
    """A scalar weight for the disjoint search (it needs one): the first metric, with the
    later ones scaled down to break its ties. Approximate where the first metric's
    differences are tinier than that scale; the primary comes from the exact lexicographic
    search, so only the choice among backups could differ."""
    fns = [link_weight(m) for m in order]
    return lambda link: sum(f(link) * (1e-6**i) for i, f in enumerate(fns))


class Router:
    """The routing state of one agent: its topology, the table in force, and the reroute
    on failure. Sans-IO: the caller runs :meth:`compute` where it likes (a worker thread)
    and hands the result to :meth:`install`."""

    def __init__(self, topology: Topology, src: str, classes: Iterable[QoS] = tuple(QoS)):
        self.topology = topology
        self.src = src
        self.classes = tuple(classes)
        self.table = RouteTable(src, -1)
        self.reroutes = 0

    @property
    def due(self) -> bool:
        """The topology moved since the table was computed (or links failed over)."""
        return self.table.version != self.topology.version or self.table.stale

    def snapshot(self) -> Graph:
        """Take the graph to compute from (cheap; do it on the event loop)."""
        self.topology.mark_routed()
        return Graph.of(self.topology)

    def compute(self, g: Graph) -> RouteTable:
        return compute_routes(g, self.src, self.classes)

    def install(self, table: RouteTable) -> None:
        # links that failed after the snapshot was taken stay failed in the new table
        for link in self.topology.links():
            if not link.up:
                table.link_down(link.a, link.b)
        self.table = table

    def link_state(self, a: str, b: str, up: bool, now: float) -> list[RouteChange]:
        if not self.topology.set_up(a, b, up, now):
            return []
        changes = self.table.link_down(a, b) if not up else self.table.link_up(a, b)
        self.reroutes += len(changes)
        return changes
