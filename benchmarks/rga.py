"""RGA replaying the automerge-paper editing trace, beside pycrdt (Yrs) and a plain list."""

from __future__ import annotations

from typing import Any

from benchmarks.common import result
from benchmarks.sync_figures import rga_figures


def run(quick: bool = False) -> dict[str, Any]:
    f = rga_figures(quick)
    replays = f["replays"]
    ours, peer, floor = replays["ours"], replays["pycrdt"], replays["list"]
    figures = {
        "ops_per_s": ours.get("ops_per_s"),
        "goal_ops_per_s": f["goal_ops_per_s"],
        **{k: v for k, v in ours.items() if k not in ("impl", "ops_per_s")},
    }
    peers = {
        "pycrdt_ops_per_s": peer.get("ops_per_s", peer.get("error")),
        "list_ops_per_s": floor.get("ops_per_s", floor.get("error")),
        **{f"pycrdt_{k}": v for k, v in peer.items() if k not in ("impl", "ops_per_s")},
    }
    ratios = {"vs_pycrdt": f["ours_vs_pycrdt"], "vs_list": f["ours_vs_list"]}
    for kind, row in f["per_type"].items():
        for what, v in row.items():
            figures[f"{kind}.{what}"] = v
    return result("rga", figures, peers, ratios, {"trace": f["trace"], "quick": quick})
