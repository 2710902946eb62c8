"""Figures: gossip propagation/bytes, RGA replays beside pycrdt, per-type throughput.

``gossip_figures`` and ``rga_figures`` return plain dicts (``python -m benchmarks gossip|rga``
prints them); the RGA replays themselves are in :mod:`benchmarks.rga_bench`.
"""

from __future__ import annotations

import json
import time
from typing import Any

from benchmarks.rga_bench import rga_table
from benchmarks.sync_scenarios import bytes_run, latency_run
from novacron_core.sync.crdt import RGA
from novacron_core.sync.engine import SyncConfig
from novacron_core.sync.kinds import KINDS

# ---------------------------------------------------------------- gossip


def gossip_figures(quick: bool = False) -> dict[str, Any]:
    """25 replicas / 100 ms links / 5% loss / a healing partition, and 9 replicas' bytes.

    ``propagation`` is the plain engine (gossip rounds only), held to the Gossip Glomers
    targets; ``propagation_eager`` is the same run with eager push on, as federation
    replicas run it: a new update goes to every other replica at once (n - 1 = 24 pushes per
    update here, by design), the rounds only repair."""
    n = 10_000 if quick else 100_000
    run = (6.0, (2.0, 3.0)) if quick else (20.0, (5.0, 8.0))
    lat = latency_run(seed=1, duration=run[0], partition=run[1])
    eager = latency_run(seed=1, duration=run[0], partition=run[1], config=SyncConfig(eager=True))
    with_deps = SyncConfig(pull=True, fanout=1, interval=0.05, ae_interval=5.0)
    return {
        "propagation": lat,
        "propagation_eager": eager,
        "targets": {"median_ms": 400, "max_ms": 600, "msgs_per_update": 20, "bytes_ratio": 1.5},
        "bytes": bytes_run(seed=1, updates=n),
        "bytes_with_per_key_vector_clocks": bytes_run(seed=1, updates=n, config=with_deps),
    }


# ---------------------------------------------------------------- RGA replays


def rga_figures(quick: bool = False) -> dict[str, Any]:
    """Every editing trace and the generated workload, ours beside pycrdt (``rga_bench``),
    and the per-type throughput table."""
    return {
        "table": rga_table(quick),
        "per_type": type_throughput(2_000 if quick else 20_000),
    }


# ---------------------------------------------------------------- per-type table


def type_throughput(n: int) -> dict[str, dict[str, float]]:
    """ops/s of local updates, and of merging those deltas into another replica."""
    out: dict[str, dict[str, float]] = {}
    for kind in KINDS:  # the mutator table the property tests use too
        if kind.bench_op is None:
            continue
        src, dst = kind.make("a"), kind.make("b")
        if isinstance(src, RGA):  # a non-empty document so the deletes have something to hit
            dst.merge(src.insert(0, "seed" * 8))
        ops = [kind.bench_op(i) for i in range(n)]
        apply = kind.apply
        t0 = time.perf_counter()
        deltas = [apply(src, op) for op in ops]
        t1 = time.perf_counter()
        t2 = time.perf_counter()
        for d in deltas:
            dst.merge(d)
        t3 = time.perf_counter()
        out[kind.name] = {"update_ops_per_s": n / (t1 - t0), "merge_ops_per_s": n / (t3 - t2)}
    return out


if __name__ == "__main__":  # pragma: no cover - the quick set, printed
    print(json.dumps({"gossip": gossip_figures(True), "rga": rga_figures(True)}, indent=1))
