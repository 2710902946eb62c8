"""The federation summary: every region's health score, leader, SLO burn rates and error
budget, as Prometheus has them (the nodes' own gauges and the SLO recording rules).

:func:`summarize` turns instant-query results into :class:`FederationSummary` (pure);
:func:`from_prometheus` runs the queries against a Prometheus HTTP API.
"""

from __future__ import annotations

import json
import math
import urllib.parse
import urllib.request
from typing import Any

from pydantic import BaseModel, Field

from novacron_core.observe import slo
from novacron_core.observe.health import COMPONENTS

BURN_WINDOWS = ("5m", "1h", "6h", "3d")
QUERIES: dict[str, str] = {
    "health": "min by (region) (novacron_health_score)",
    "component": "min by (region, component) (novacron_health_component_ratio)",
    "leader": "max by (region) (novacron_raft_is_leader)",
    "nodes": "count by (region) (novacron_raft_term)",
    "budget": f"min by (region, slo) ({slo.BUDGET_REMAINING})",
    **{
        f"ratio_{w}": f"max by (region, slo) ({slo.ERROR_RATIO.format(window=w)})"
        for w in BURN_WINDOWS
    },
}


class SLOStatus(BaseModel):
    objective: float
    burn_rate: dict[str, float | None] = Field(
        description="error ratio / budget per window (1.0 spends the 30-day budget exactly)"
    )
    budget_remaining: float | None = Field(description="share of the 30-day budget left")


class RegionSummary(BaseModel):
    region: str
    nodes: int
    leader: bool
    health: float | None = Field(description="0-100, the lowest of the region's nodes")
    components: dict[str, float] = Field(default_factory=dict)
    slos: dict[str, SLOStatus] = Field(default_factory=dict)


class FederationSummary(BaseModel):
    regions: list[RegionSummary]
    health: float | None = Field(description="the lowest region score")
    regions_without_leader: list[str]


def _num(v: Any) -> float | None:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def summarize(results: dict[str, list[dict[str, Any]]]) -> FederationSummary:
    """``results``: query name (as in :data:`QUERIES`) -> Prometheus vector result."""
    regions: dict[str, RegionSummary] = {}

    def region(name: str) -> RegionSummary:
        if name not in regions:
            regions[name] = RegionSummary(region=name, nodes=0, leader=False, health=None)
        return regions[name]

    for item in results.get("nodes", []):
        region(item["metric"].get("region", "")).nodes = int(float(item["value"][1]))
    for item in results.get("leader", []):
        region(item["metric"].get("region", "")).leader = (_num(item["value"][1]) or 0) >= 1
    for item in results.get("health", []):
        region(item["metric"].get("region", "")).health = _num(item["value"][1])
    for item in results.get("component", []):
        comp = item["metric"].get("component", "")
        value = _num(item["value"][1])
        if comp in COMPONENTS and value is not None:
            region(item["metric"].get("region", "")).components[comp] = value
    objectives = {s.name: s for s in slo.SLOS}
    for key in [f"ratio_{w}" for w in BURN_WINDOWS] + ["budget"]:
        for item in results.get(key, []):
            name = item["metric"].get("slo", "")
            if name not in objectives:
                continue
            r = region(item["metric"].get("region", ""))
            st = r.slos.setdefault(
                name,
                SLOStatus(
                    objective=objectives[name].objective,
                    burn_rate=dict.fromkeys(BURN_WINDOWS),
                    budget_remaining=None,
                ),
            )
            value = _num(item["value"][1])
            if key == "budget":
                st.budget_remaining = value
            elif value is not None:
                st.burn_rate[key.removeprefix("ratio_")] = slo.burn_rate(value, objectives[name])
    ordered = sorted(regions.values(), key=lambda r: r.region)
    scores = [r.health for r in ordered if r.health is not None]
    return FederationSummary(
        regions=ordered,
        health=min(scores) if scores else None,
        regions_without_leader=[r.region for r in ordered if not r.leader],
    )


def query(base_url: str, expr: str, timeout: float = 5.0) -> list[dict[str, Any]]:
    """One instant query; the vector result (raises OSError/ValueError on failure)."""
    url = base_url.rstrip("/") + "/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=timeout) as r:
        body = json.loads(r.read())
    if body.get("status") != "success":
        raise ValueError(f"{expr}: {body.get('error', body)}")
    data = body["data"]
    if data.get("resultType") != "vector":
        raise ValueError(f"{expr}: a vector was expected, got {data.get('resultType')}")
    result: list[dict[str, Any]] = data["result"]
    return result


def from_prometheus(base_url: str) -> FederationSummary:
    return summarize({name: query(base_url, expr) for name, expr in QUERIES.items()})
