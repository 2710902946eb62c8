"""The operator on the local control plane: time to Ready for 1 and N regions, reconcile
latency and RSS, against the issue's goals (200 regions < 60 s, p99 < 1 s, RSS < 150 MB).

No peer operator runs here; the goals are printed beside the figures, and so is the floor:
the same children applied with no operator, on a fresh control plane in the same run.
"""

from __future__ import annotations

from typing import Any

from novacron_operator.bench import run as operator_run

from benchmarks.common import result


def run(quick: bool = False) -> dict[str, Any]:
    figures = operator_run(quick)
    goal = figures.pop("goal", "")
    floor = figures.pop("floor")
    goals = {"regions_200_ready_s": 60, "reconcile_p99_s": 1.0, "operator_rss_mb": 150}
    many = 20 if quick else 200
    key = f"regions_{many}_ready_s"
    peers = {f"goal.{k}": v for k, v in goals.items()}
    peers.update({f"no_operator.{k}": v for k, v in floor.items()})
    ratios = {f"{key}_vs_no_operator": figures[key] / max(floor[key], 1e-9)}
    return result("operator", figures, peers, ratios, {"quick": quick, "goal": goal})
