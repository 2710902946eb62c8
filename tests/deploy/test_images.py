"""Dockerfiles: hadolint, and the properties issue 7 asks of both images."""

from __future__ import annotations

import re
import tomllib

import pytest

from .tools import CHART, ROOT, require_tool, run

DOCKERFILES = {
    "core": ROOT / "images" / "core.Dockerfile",
    "operator": ROOT / "operator" / "Dockerfile",
}
BUILD_TOOLS = ("gcc", "build-essential", "make ", "git ", "curl ", "wget ")


def stages(text: str) -> list[str]:
    return re.split(r"^FROM ", text, flags=re.M)[1:]


@pytest.mark.parametrize("name", DOCKERFILES)
def test_hadolint(name: str) -> None:
    hadolint = require_tool("hadolint")
    proc = run([hadolint, "--failure-threshold", "info", str(DOCKERFILES[name])], check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("name", DOCKERFILES)
def test_multi_stage_slim_non_root_no_build_tools(name: str) -> None:
    text = DOCKERFILES[name].read_text()
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11-slim", text, re.M)
    parts = stages(text)
    assert len(parts) >= 2, "multi-stage build expected"
    final = parts[-1]
    assert "COPY --from=build /opt/novacron /opt/novacron" in final
    users = re.findall(r"^USER (\S+)", final, re.M)
    assert users, "the runtime stage sets USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit(), "numeric USER, so runAsNonRoot can verify it"
    assert int(uid) != 0
    for tool in BUILD_TOOLS:
        assert tool not in final, f"{tool.strip()} in the runtime stage"
    assert "pip uninstall" in final
    assert "compileall" in text, "bytecode compiled at build time (read-only root filesystem)"
    assert "/healthz" in final


def test_operator_entrypoint_matches_chart_and_console_script() -> None:
    text = DOCKERFILES["operator"].read_text()
    assert 'ENTRYPOINT ["novacron-operator"]' in text
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert "novacron-operator" in scripts
    assert "novacron" in scripts
    deployment = (CHART / "templates" / "operator-deployment.yaml").read_text()
    assert 'command: ["novacron-operator"]' in deployment


def test_chart_runs_as_the_image_user() -> None:
    values = (CHART / "values.yaml").read_text()
    for path in DOCKERFILES.values():
        uid = re.findall(r"^USER (\d+)", path.read_text(), re.M)[-1]
        assert f"runAsUser: {uid}" in values
