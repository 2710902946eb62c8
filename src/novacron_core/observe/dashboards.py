"""NovaCron's Grafana dashboards, generated: Global, Regional, Protocol, Load Balancer.

``python -m novacron_core.observe.dashboards`` writes them to ``charts/novacron/dashboards``
(the chart ships each as a ConfigMap for Grafana's sidecar; ``--check`` exits 1 when stale).
Every query uses only metrics a running node exports or the shipped rules record:
tests/observe/test_prometheus.py runs each one against a real Prometheus scraping the demo
federation (every region) and fails on a query that returns no series, or a per-region one
that misses a region.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from novacron_core.observe import slo

OUT_DIR = Path(__file__).resolve().parents[3] / "charts/novacron/dashboards"
R = 'region=~"$region"'
CLIENT = 'op=~"read|write"'
REQ = "novacron_http_request_duration_seconds"
# (title, unit, [(expr, legend)])
Panel = tuple[str, str, list[tuple[str, str]]]


def _burn(name: str, window: str) -> str:
    s = {x.name: x for x in slo.SLOS}[name]
    return f'{slo.ERROR_RATIO.format(window=window)}{{slo="{name}"}} / {s.budget:g}'


GLOBAL: list[Panel] = [
    ("Health score by region (0-100)", "none",
     [("min by (region) (novacron_health_score)", "{{region}}")]),
    ("Leader present by region", "bool",
     [("max by (region) (novacron_raft_is_leader)", "{{region}}")]),
    ("Availability SLO burn rate (1h, 5m)", "none",
     [(_burn("availability", "1h"), "{{region}} 1h"),
      (_burn("availability", "5m"), "{{region}} 5m")]),
    ("Write-latency SLO burn rate (1h, 5m)", "none",
     [(_burn("write_latency", "1h"), "{{region}} 1h"),
      (_burn("write_latency", "5m"), "{{region}} 5m")]),
    ("Error budget remaining (30 days)", "percentunit",
     [(slo.BUDGET_REMAINING, "{{region}} {{slo}}")]),
    ("Client requests/s by region", "reqps",
     [(f"sum by (region) (rate({REQ}_count{{{CLIENT}}}[5m]))", "{{region}}")]),
    ("Write latency p99 by region", "s",
     [(f'histogram_quantile(0.99, sum by (region, le) (rate({REQ}_bucket{{op="write"}}[5m])))',
       "{{region}}")]),
    ("Anomalies flagged (10m) by region and stream", "none",
     [("sum by (region, stream) (increase(novacron_anomaly_detections_total[10m]))",
       "{{region}} {{stream}}")]),
]  # fmt: skip

REGIONAL: list[Panel] = [
    ("Health score", "none", [(f"min(novacron_health_score{{{R}}})", "score")]),
    ("Health score components (0..1)", "percentunit",
     [(f"min by (component) (novacron_health_component_ratio{{{R}}})", "{{component}}")]),
    ("Leader by node", "bool", [(f"novacron_raft_is_leader{{{R}}}", "{{instance}}")]),
    ("Request latency by operation (p50, p99)", "s",
     [(f"histogram_quantile(0.5, sum by (op, le) (rate({REQ}_bucket{{{R}}}[5m])))", "{{op}} p50"),
      (f"histogram_quantile(0.99, sum by (op, le) (rate({REQ}_bucket{{{R}}}[5m])))",
       "{{op}} p99")]),
    ("Requests/s by status code", "reqps",
     [(f"sum by (code) (rate(novacron_http_requests_total{{{R}}}[5m]))", "{{code}}")]),
    ("Anomaly score by stream (0..1)", "percentunit",
     [(f"max by (stream) (novacron_anomaly_score{{{R}}})", "{{stream}}")]),
    ("Node memory (RSS)", "bytes",
     [(f"process_resident_memory_bytes{{{R}}}", "{{instance}}")]),
    ("Node CPU (cores)", "none",
     [(f"rate(process_cpu_seconds_total{{{R}}}[5m])", "{{instance}}")]),
]  # fmt: skip

PROTOCOL: list[Panel] = [
    ("Raft term by region", "none", [("max by (region) (novacron_raft_term)", "{{region}}")]),
    ("Commit rate (entries/s)", "none",
     [("max by (region) (rate(novacron_raft_commit_index[5m]))", "{{region}}")]),
    ("Apply lag (commit - applied) by node", "none",
     [("max by (region, instance) (novacron_raft_commit_index - novacron_raft_applied_index)",
       "{{region}} {{instance}}")]),
    ("Elections started (15m)", "none",
     [("sum by (region) (increase(novacron_raft_elections_total[15m]))", "{{region}}")]),
    ("Group-commit fsync p99", "s",
     [("histogram_quantile(0.99, sum by (region, le) "
       "(rate(novacron_raft_fsync_seconds_bucket[5m])))", "{{region}}")]),
    ("Replication health (0..1)", "percentunit",
     [('min by (region) (novacron_health_component_ratio{component="replication"})',
       "{{region}}")]),
    ("Peer links up (0..1)", "percentunit",
     [('min by (region) (novacron_health_component_ratio{component="links"})', "{{region}}")]),
    ("Replication-lag anomaly score", "percentunit",
     [('max by (region) (novacron_anomaly_score{stream="replication_lag"})', "{{region}}")]),
]  # fmt: skip

LOAD_BALANCER: list[Panel] = [
    ("Client requests/s by node", "reqps",
     [(f"sum by (region, instance) (rate({REQ}_count{{{CLIENT}}}[5m]))",
       "{{region}} {{instance}}")]),
    ("Share of the region's requests by node", "percentunit",
     [(f"sum by (region, instance) (rate({REQ}_count{{{CLIENT}}}[5m])) / ignoring (instance) "
       f"group_left () sum by (region) (rate({REQ}_count{{{CLIENT}}}[5m]))",
       "{{region}} {{instance}}")]),
    ("Shed with 429 (too many in flight) by node", "reqps",
     [('sum by (region, instance) (rate(novacron_http_requests_total{code="429"}[5m]))',
       "{{region}} {{instance}}")]),
    ("5xx by node", "reqps",
     [('sum by (region, instance) (rate(novacron_http_requests_total{code=~"5.."}[5m]))',
       "{{region}} {{instance}}")]),
    ("Client latency p99 by node", "s",
     [(f"histogram_quantile(0.99, sum by (region, instance, le) "
       f"(rate({REQ}_bucket{{{CLIENT}}}[5m])))", "{{region}} {{instance}}")]),
    ("Nodes reporting by region", "none",
     [("count by (region) (novacron_raft_term)", "{{region}}")]),
]  # fmt: skip

DASHBOARDS: dict[str, tuple[str, list[Panel]]] = {
    "global": ("NovaCron / Global", GLOBAL),
    "regional": ("NovaCron / Regional", REGIONAL),
    "protocol": ("NovaCron / Protocol", PROTOCOL),
    "load-balancer": ("NovaCron / Load Balancer", LOAD_BALANCER),
}


def _variables(regional: bool) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [
        {"name": "datasource", "type": "datasource", "query": "prometheus", "label": "Data source"}
    ]
    if regional:
        out.append(
            {
                "name": "region",
                "type": "query",
                "label": "Region",
                "datasource": {"type": "prometheus", "uid": "${datasource}"},
                "query": "label_values(novacron_raft_term, region)",
                "refresh": 2,
                "includeAll": True,
                "multi": True,
                "current": {"text": "All", "value": "$__all"},
            }
        )
    return out


def dashboard(key: str) -> dict[str, Any]:
    title, panels = DASHBOARDS[key]
    out = []
    for i, (ptitle, unit, targets) in enumerate(panels):
        out.append(
            {
                "id": i + 1,
                "type": "timeseries",
                "title": ptitle,
                "datasource": {"type": "prometheus", "uid": "${datasource}"},
                "gridPos": {"h": 8, "w": 12, "x": 12 * (i % 2), "y": 8 * (i // 2)},
                "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
                "targets": [
                    {"refId": chr(ord("A") + j), "expr": expr, "legendFormat": legend}
                    for j, (expr, legend) in enumerate(targets)
                ],
            }
        )
    return {
        "uid": f"novacron-{key}",
        "title": title,
        "tags": ["novacron"],
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {"list": _variables(any(R in e for _, _, ts in panels for e, _ in ts))},
        "panels": out,
    }


def render() -> dict[str, str]:
    return {f"{k}.json": json.dumps(dashboard(k), indent=2) + "\n" for k in DASHBOARDS}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m novacron_core.observe.dashboards")
    p.add_argument("--check", action="store_true", help="exit 1 if a file is stale")
    p.add_argument("--out", type=Path, default=OUT_DIR)
    args = p.parse_args(argv)
    stale = []
    for name, text in render().items():
        path = args.out / name
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
        else:
            path.write_text(text)
    if stale:
        print(f"stale: {stale}: run python -m novacron_core.observe.dashboards")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
