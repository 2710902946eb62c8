"""Figures for issue 5: gossip propagation/bytes and RGA throughput beside its peers.

``gossip_figures`` and ``rga_figures`` return plain dicts (``python -m benchmarks gossip|rga``
prints them). Replays run in subprocesses so each one's memory is measured on its own:
``python -m benchmarks.sync_figures replay <impl> <ops>`` (from the repository root) prints
one JSON line.
"""

from __future__ import annotations

import gc
import gzip
import json
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.sync_scenarios import bytes_run, latency_run
from novacron_core.sync.crdt import RGA
from novacron_core.sync.engine import SyncConfig
from novacron_core.sync.kinds import KINDS

REPO = Path(__file__).resolve().parents[1]
TRACES = REPO / ".." / "shared" / "data" / "editing-traces"
Patch = tuple[int, int, str]

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


# ---------------------------------------------------------------- RGA replay


def load_ops(limit: int | None = None, trace: str = "automerge-paper") -> list[Patch]:
    with gzip.open(TRACES / f"{trace}.json.gz") as f:
        data = json.load(f)
    ops = [(p[0], p[1], p[2]) for t in data["txns"] for p in t["patches"]]
    return ops[:limit] if limit else ops


def _replayer(impl: str) -> tuple[Callable[[list[Patch]], Any], Callable[[Any], str]]:
    if impl == "list":

        def run_list(ops: list[Patch]) -> Any:
            doc: list[str] = []
            for pos, d, s in ops:
                if d:
                    del doc[pos : pos + d]
                if s:
                    doc[pos:pos] = s
            return doc

        return run_list, "".join

    if impl == "ours":

        def run_ours(ops: list[Patch]) -> Any:
            doc = RGA("bench")
            ins, dele = doc.insert, doc.delete
            for pos, d, s in ops:
                if d:
                    dele(pos, d)
                if s:
                    ins(pos, s)
            return doc

        return run_ours, lambda doc: str(doc.text())

    if impl == "pycrdt":  # one op at a time, each its own transaction, as ours is driven
        import pycrdt

        def run_pycrdt(ops: list[Patch]) -> Any:
            ydoc: Any = pycrdt.Doc()
            text = ydoc.get("t", type=pycrdt.Text)
            for pos, d, s in ops:
                if d:
                    del text[pos : pos + d]
                if s:
                    text.insert(pos, s)
            return (ydoc, text)

        return run_pycrdt, lambda pair: str(pair[1])
    raise ValueError(f"unknown replay implementation {impl!r}")


def _rss_kb() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4


def replay(impl: str, limit: int | None) -> dict[str, Any]:
    """One replay: wall time, then (separately) memory. Runs in its own process."""
    ops = load_ops(limit)
    run, text_of = _replayer(impl)
    gc.collect()
    rss0 = _rss_kb()
    t0 = time.perf_counter()
    doc = run(ops)
    dt = time.perf_counter() - t0
    rss1 = _rss_kb()
    expected = _end_content() if limit is None else None
    ok = expected is None or text_of(doc) == expected
    del doc
    gc.collect()
    peak = None
    if not impl.startswith("pycrdt"):  # tracemalloc cannot see Rust allocations
        tracemalloc.start()
        run(ops)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return {
        "impl": impl,
        "ops": len(ops),
        "seconds": dt,
        "ops_per_s": len(ops) / dt,
        "rss_growth_mb": (rss1 - rss0) / 1024,
        "python_heap_peak_mb": None if peak is None else peak / 2**20,
        "end_content_ok": ok,
    }


def _end_content() -> str:
    with gzip.open(TRACES / "automerge-paper.json.gz") as f:
        out: str = json.load(f)["endContent"]
    return out


def _replay_subprocess(impl: str, limit: int | None) -> dict[str, Any]:
    args = [sys.executable, "-m", "benchmarks.sync_figures", "replay", impl, str(limit or 0)]
    out = subprocess.run(args, capture_output=True, text=True, check=True, timeout=600, cwd=REPO)
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def rga_figures(quick: bool = False) -> dict[str, Any]:
    """automerge-paper replay: ours vs pycrdt (Yrs) vs a plain list; per-type throughput."""
    limit = 50_000 if quick else None
    runs = {}
    for impl in ("list", "ours", "pycrdt"):
        try:
            runs[impl] = _replay_subprocess(impl, limit)
        except (subprocess.CalledProcessError, OSError) as e:
            runs[impl] = {"impl": impl, "error": str(e)}
    ours = runs["ours"].get("ops_per_s", 0.0)
    peer = runs["pycrdt"].get("ops_per_s")
    return {
        "trace": "automerge-paper",
        "replays": runs,
        "ours_vs_pycrdt": ours / peer if peer else None,
        "ours_vs_list": ours / runs["list"]["ops_per_s"] if "ops_per_s" in runs["list"] else None,
        "goal_ops_per_s": 121_000,
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


if __name__ == "__main__":  # pragma: no cover - the subprocess entry of rga_figures
    if len(sys.argv) == 4 and sys.argv[1] == "replay":
        print(json.dumps(replay(sys.argv[2], int(sys.argv[3]) or None)))
    else:
        print(json.dumps({"gossip": gossip_figures(True), "rga": rga_figures(True)}, indent=1))
