"""Binaries the observability tests use (Debian's prometheus/promtool, the Jaeger build)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "charts/novacron/rules/novacron.rules.yaml"
DASHBOARDS = ROOT / "charts/novacron/dashboards"
PROMTOOL_TESTS = Path(__file__).parent / "promtool" / "rules_test.yaml"


def require(name: str, hint: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} not found: {hint}")
    return path


def promtool() -> str:
    return require("promtool", "apt-get install prometheus (.ci/run installs it)")


def prometheus() -> str:
    return require("prometheus", "apt-get install prometheus (.ci/run installs it)")


def jaeger() -> str:
    """The Jaeger v2 binary built by e2e/jaeger/build.sh (never built from a test: minutes)."""
    env = os.environ.get("NOVACRON_JAEGER")
    if env and Path(env).is_file():
        return env
    cache = Path(os.environ.get("NOVACRON_CACHE", Path.home() / ".cache" / "novacron"))
    found = sorted((cache / "tools").glob("jaeger-*/jaeger"))
    if not found:
        pytest.skip("jaeger not built: run `bash e2e/jaeger/build.sh` (.ci/run does, once)")
    return str(found[-1])


@dataclass(frozen=True)
class PanelQuery:
    dashboard: str
    title: str
    expr: str
    region: str | None  # what the dashboard's $region variable was set to, if it uses it


def panel_queries(regions: Sequence[str] = (".*",)) -> list[PanelQuery]:
    """Every target expression of every dashboard panel but the operator's (its metrics are
    the operator's e2e tests' business); one using ``$region`` once per value given (Grafana
    substitutes the variable into ``region=~"$region"``; its "All" is ``.*``)."""
    out = []
    for path in sorted(DASHBOARDS.glob("*.json")):
        if path.name == "operator.json":
            continue
        for panel in json.loads(path.read_text())["panels"]:
            for t in panel["targets"]:
                expr = t["expr"]
                values: Sequence[str | None] = regions if "$region" in expr else [None]
                for r in values:
                    sub = expr if r is None else expr.replace("$region", r)
                    out.append(PanelQuery(path.stem, panel["title"], sub, r))
    return out


def run(argv: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=120)
