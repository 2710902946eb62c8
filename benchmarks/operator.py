"""The operator on the local control plane: time to Ready for 1 and N regions, reconcile
latency and RSS, against the issue's goals (200 regions < 60 s, p99 < 1 s, RSS < 150 MB).

No peer operator runs here; the goals are printed beside the figures.
"""

from __future__ import annotations

from typing import Any

from novacron_operator.bench import run as operator_run

from benchmarks.common import result


def run(quick: bool = False) -> dict[str, Any]:
    figures = operator_run(quick)
    goal = figures.pop("goal", "")
    goals = {"regions_200_ready_s": 60, "reconcile_p99_s": 1.0, "operator_rss_mb": 150}
    return result(
        "operator",
        figures,
        {f"goal.{k}": v for k, v in goals.items()},
        {},
        {"quick": quick, "goal": goal},
    )
