"""The gateway: decision cost, affinity hashing beside uhashring, and the process beside
HAProxy (throughput and p99 with wrk, failover, 10,000 keep-alive connections).

Needs ``wrk`` and ``haproxy`` (Debian: ``apt-get install -y wrk haproxy``) and the bench
extra (``uhashring``). Every part runs in the same invocation; the process parts are in
``benchmarks/gateway_proxy.py``. ``python -m benchmarks gateway [--quick]``.
"""

from __future__ import annotations

import math
import random
import statistics
import subprocess
import time
from typing import Any

from benchmarks.common import result
from novacron_core.balancing import (
    AlgorithmFactory,
    Backend,
    BackendSpec,
    Balancer,
    CheckSpec,
    Distances,
    GeoPoint,
    HashRing,
    Maglev,
    Outcome,
    PickContext,
    PoolSpec,
    Request,
    SlowStart,
)
from novacron_core.balancing.algorithms import ALGORITHMS


def _best_ns(fn: Any, n: int, rounds: int = 5) -> float:
    """Nanoseconds per call: the best of a few rounds (the least disturbed by neighbours)."""
    best = math.inf
    for _ in range(rounds):
        t = time.perf_counter_ns()
        fn(n)
        best = min(best, (time.perf_counter_ns() - t) / n)
    return best


def decision_costs(quick: bool) -> dict[str, float]:
    """ns per pick for every algorithm over 10 backends with uneven load, and the whole
    pool decision (acquire + release: levels, spill-over, limits, breaker, outlier)."""
    n = 20_000 if quick else 200_000
    rng = random.Random(1)
    locations = {"us-east1": GeoPoint(33.2, -80.0), "europe-west1": GeoPoint(50.4, 3.8)}
    backends = [
        Backend(f"b{i}", "127.0.0.1", 9000 + i, region="us-east1", weight=1 + i % 3)
        for i in range(10)
    ]
    for b in backends:
        b.active = rng.randint(0, 20)
        b.ewma_s = rng.uniform(0.001, 0.02)
        b.since = -100.0
    ctx = PickContext("10.1.2.3", GeoPoint(40.7, -74.0), "us-east1", backends)
    out: dict[str, float] = {}
    for name in ALGORITHMS:
        algo = AlgorithmFactory(name, rng, SlowStart(), Distances(locations))()

        def loop(k: int, algo: Any = algo) -> None:
            pick = algo.pick
            for _ in range(k):
                pick(0.0, backends, ctx)

        out[f"pick_ns.{name}"] = round(_best_ns(loop, n), 1)
    ring = HashRing([b.id for b in backends])
    mag = Maglev([b.id for b in backends])
    keys = [f"session-{i}".encode() for i in range(n)]

    def ring_loop(k: int) -> None:
        lookup = ring.lookup
        for key in keys[:k]:
            lookup(key)

    def mag_loop(k: int) -> None:
        lookup = mag.lookup
        for key in keys[:k]:
            lookup(key)

    out["pick_ns.affinity_ring"] = round(_best_ns(ring_loop, n), 1)
    out["pick_ns.affinity_maglev"] = round(_best_ns(mag_loop, n), 1)
    spec = PoolSpec(health=CheckSpec(kind="none"))
    bal = Balancer(spec, "us-east1", Distances(locations), random.Random(2))
    for region in locations:
        specs = [BackendSpec(f"{region}/n{i}", "127.0.0.1", 1, region) for i in range(5)]
        bal.set_members(0.0, region, specs)
    req = Request(ctx=PickContext("10.1.2.3"))

    def pool_loop(k: int) -> None:
        acquire, release, ok = bal.acquire, bal.release, Outcome.SUCCESS
        for _i in range(k):
            c = acquire(100.0, req)
            release(100.0, c, ok, 0.002)  # type: ignore[arg-type]

    out["decision_ns.pool_acquire_release"] = round(_best_ns(pool_loop, n // 2), 1)
    return out


def hashing_figures(quick: bool) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Lookups/s for our ring and Maglev beside uhashring (same keys, same nodes), and
    balance (max/mean keys per node) and keys moved when one node leaves."""
    import uhashring

    n_keys = 50_000 if quick else 200_000
    keys = [f"vm-{i:07d}" for i in range(n_keys)]
    figures: dict[str, Any] = {}
    peers: dict[str, Any] = {}
    ratios: dict[str, Any] = {}
    for n_nodes in (10, 100):
        nodes = [f"node-{i:03d}" for i in range(n_nodes)]
        ours_ring = HashRing(nodes)
        t = time.perf_counter()
        ours_mag = Maglev(nodes)
        build_s = time.perf_counter() - t
        theirs = uhashring.HashRing(nodes=nodes)
        rates = {}
        for label, fn in (
            ("ring", ours_ring.lookup),
            ("maglev", ours_mag.lookup),
            ("uhashring", theirs.get_node),
        ):

            def loop(k: int, fn: Any = fn) -> None:
                for key in keys[:k]:
                    fn(key)

            rates[label] = 1e9 / _best_ns(loop, n_keys, rounds=3)
        figures[f"n{n_nodes}.ring_lookups_per_s"] = round(rates["ring"])
        figures[f"n{n_nodes}.maglev_lookups_per_s"] = round(rates["maglev"])
        figures[f"n{n_nodes}.maglev_build_ms"] = round(build_s * 1000, 1)
        peers[f"n{n_nodes}.uhashring_lookups_per_s"] = round(rates["uhashring"])
        ratios[f"n{n_nodes}.ring_vs_uhashring"] = round(rates["ring"] / rates["uhashring"], 2)
        ratios[f"n{n_nodes}.maglev_vs_uhashring"] = round(rates["maglev"] / rates["uhashring"], 2)
        # balance and disruption
        gone = nodes[n_nodes // 2]
        rest = [x for x in nodes if x != gone]
        after = {
            "ring": HashRing(rest).lookup,
            "maglev": Maglev(rest).lookup,
            "uhashring": uhashring.HashRing(nodes=rest).get_node,
        }
        for label, before in (
            ("ring", ours_ring.lookup),
            ("maglev", ours_mag.lookup),
            ("uhashring", theirs.get_node),
        ):
            owners = [before(k) for k in keys]
            counts: dict[str, int] = {}
            for o in owners:
                counts[o] = counts.get(o, 0) + 1
            balance = max(counts.values()) / (n_keys / n_nodes)
            moved = sum(1 for k, o in zip(keys, owners, strict=True) if after[label](k) != o)
            target = peers if label == "uhashring" else figures
            target[f"n{n_nodes}.{label}_max_over_mean"] = round(balance, 3)
            target[f"n{n_nodes}.{label}_moved_on_removal"] = round(moved / n_keys, 4)
        figures[f"n{n_nodes}.minimum_moved"] = round(1 / n_nodes, 4)
    return figures, peers, ratios


def _uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def run(quick: bool = False) -> dict[str, Any]:
    from benchmarks import gateway_proxy

    load_before = _uptime()
    figures: dict[str, Any] = {}
    peers: dict[str, Any] = {}
    ratios: dict[str, Any] = {}
    figures.update(decision_costs(quick))
    f, p, r = hashing_figures(quick)
    figures.update(f)
    peers.update(p)
    ratios.update(r)
    f, p, r = gateway_proxy.process_figures(quick)
    figures.update(f)
    peers.update(p)
    ratios.update(r)
    params = {
        "quick": quick,
        "uptime_before": load_before,
        "uptime_after": _uptime(),
        "median_pick_ns": statistics.median(
            v for k, v in figures.items() if k.startswith("pick_ns.")
        ),
    }
    return result("gateway", figures, peers, ratios, params)
