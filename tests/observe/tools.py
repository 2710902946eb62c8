"""Binaries the observability tests use (Debian's prometheus/promtool, the Jaeger build)."""

from __future__ import annotations

import os
import shutil
import subprocess
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


def run(argv: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=120)
