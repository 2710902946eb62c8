"""Real WAN topologies from the Internet Topology Zoo (GraphML) as :class:`Topology`.

Each city is a region with its coordinates and one member; a link's latency is the
great-circle distance over the speed of light in fibre, its bandwidth the published link
speed where the file has one (else ``default_mbps``). Parallel links between two cities are
one link with their capacities added (they are routed over as a bundle).
"""

from __future__ import annotations

from pathlib import Path

import rustworkx as rx

from novacron_core.routing.topology import Region, Topology, TopologyError, haversine_km

FIBRE_KM_PER_MS = 200.0


def load_graphml(path: str | Path, default_mbps: float = 10_000.0) -> Topology:
    graphs = rx.read_graphml(str(path))
    if not graphs:
        raise TopologyError(f"{path}: no graph in the file")
    g = graphs[0]
    topo = Topology()
    names: dict[int, str] = {}
    for i in g.node_indices():
        d = g[i]
        lat, lon = d.get("Latitude"), d.get("Longitude")
        if lat is None or lon is None:
            continue  # a node without coordinates has no latency to give its links
        name = f"{d.get('label') or 'n'}-{d.get('id', i)}"
        names[i] = name
        topo.add_region(Region(name, float(lat), float(lon)))
        topo.ensure_member(name, name)
    bundles: dict[tuple[str, str], tuple[float, float]] = {}
    for a, b, data in g.weighted_edge_list():
        if a not in names or b not in names or a == b:
            continue
        ra, rb = topo.regions[names[a]], topo.regions[names[b]]
        assert ra.latitude is not None
        assert ra.longitude is not None
        assert rb.latitude is not None
        assert rb.longitude is not None
        km = haversine_km(ra.latitude, ra.longitude, rb.latitude, rb.longitude)
        latency = max(km / FIBRE_KM_PER_MS, 0.05)
        raw = (data or {}).get("LinkSpeedRaw")
        bw = float(raw) / 1e6 if raw else default_mbps
        key = (names[a], names[b]) if names[a] <= names[b] else (names[b], names[a])
        old = bundles.get(key)
        bundles[key] = (latency, bw + (old[1] if old else 0.0))
    for (na, nb), (latency, bw) in sorted(bundles.items()):
        topo.add_link(na, nb, latency, bandwidth_mbps=bw)
    return topo
