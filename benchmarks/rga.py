"""RGA replaying every editing trace and a generated paste/block-delete workload, beside pycrdt.

Prints one row per workload: exact final text, our ops/s and pycrdt's (CPU time, same run),
the ratio against its target (2.5x on typing-heavy traces, 1.0x otherwise), our tracemalloc
peak and what stays held per live character, and both encoded sizes; then the per-type
throughput table. See benchmarks.rga_bench for how each replay runs.
"""

from __future__ import annotations

import os
from typing import Any

from benchmarks.common import result
from benchmarks.editing_traces import traces_dir
from benchmarks.rga_bench import table_lines
from benchmarks.sync_figures import rga_figures


def run(quick: bool = False) -> dict[str, Any]:
    f = rga_figures(quick)
    table = f["table"]
    load = os.getloadavg()
    print(f"\n  load average when done: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    for line in table_lines(table):
        print("  " + line)
    figures: dict[str, Any] = {}
    peers: dict[str, Any] = {}
    ratios: dict[str, Any] = {}
    for name, row in table["rows"].items():
        ours, peer = row["ours"], row["pycrdt"]
        for k in ("ops", "ops_per_s", "wall_ops_per_s", "text_ok", "tracemalloc_peak_mb"):
            figures[f"{name}.{k}"] = ours.get(k, ours.get("error"))
        figures[f"{name}.held_bytes_per_char"] = ours.get("held_bytes_per_char")
        figures[f"{name}.encoded_bytes"] = ours.get("encoded_bytes")
        peers[f"{name}.pycrdt_ops_per_s"] = peer.get("ops_per_s", peer.get("error"))
        peers[f"{name}.pycrdt_text_ok"] = peer.get("text_ok")
        peers[f"{name}.pycrdt_encoded_bytes"] = peer.get("encoded_bytes")
        ratios[f"{name}.vs_pycrdt"] = row["ratio"]
        ratios[f"{name}.target"] = row["target"]
        ratios[f"{name}.met"] = row["met"]
    for kind, row in f["per_type"].items():
        for what, v in row.items():
            figures[f"per_type.{kind}.{what}"] = v
    params = {"quick": quick, "traces": str(traces_dir()), "load_average": list(load)}
    return result("rga", figures, peers, ratios, params)
