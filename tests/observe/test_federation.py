"""The federation summary from Prometheus query results (pure)."""

from __future__ import annotations

import pytest

from novacron_core.observe import federation


def vec(value: float | str, **labels: str) -> dict[str, object]:
    return {"metric": labels, "value": [0, str(value)]}


def test_summary_per_region_with_burn_rates_and_the_worst_score() -> None:
    s = federation.summarize(
        {
            "nodes": [vec(3, region="eu"), vec(3, region="us")],
            "leader": [vec(1, region="eu"), vec(0, region="us")],
            "health": [vec(97.5, region="eu"), vec(25, region="us")],
            "component": [
                vec(1, region="eu", component="leader"),
                vec(0.2, region="eu", component="links"),
                vec(0.5, region="eu", component="bogus"),
            ],
            "ratio_1h": [
                vec(0.0144, region="eu", slo="availability"),
                vec("NaN", region="us", slo="availability"),
            ],
            "budget": [
                vec(0.25, region="eu", slo="availability"),
                vec(1, region="eu", slo="unknown"),
            ],
        }
    )
    eu, us = s.regions
    assert (eu.region, eu.nodes, eu.leader, eu.health) == ("eu", 3, True, 97.5)
    assert eu.components == {"leader": 1.0, "links": 0.2}
    assert eu.slos["availability"].burn_rate["1h"] == pytest.approx(14.4)
    assert eu.slos["availability"].budget_remaining == 0.25
    assert eu.slos["availability"].objective == 0.999
    assert us.slos["availability"].burn_rate["1h"] is None  # NaN: no traffic
    assert s.health == 25
    assert s.regions_without_leader == ["us"]


def test_an_empty_prometheus_gives_an_empty_summary() -> None:
    s = federation.summarize({})
    assert s.regions == []
    assert s.health is None
