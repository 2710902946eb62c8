""".github/workflows: actionlint, and the jobs issue 7 asks for."""

from __future__ import annotations

from typing import Any

import yaml

from .tools import ROOT, require_tool, run

WORKFLOWS = ROOT / ".github" / "workflows"


def ci() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((WORKFLOWS / "ci.yml").read_text())
    return loaded


def test_actionlint() -> None:
    actionlint = require_tool("actionlint")
    proc = run([actionlint, "-color=false"], check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def steps_text(job: dict[str, Any]) -> str:
    return "\n".join(str(s.get("run", "")) + str(s.get("uses", "")) for s in job["steps"])


def test_jobs_cover_lint_unit_images_chart_and_kind_e2e() -> None:
    jobs = ci()["jobs"]
    assert "make test" in steps_text(jobs["test"])
    lint = steps_text(jobs["deploy-lint"])
    for needle in ("helm lint", "--strict", "actionlint", "hadolint", "kubectl kustomize"):
        assert needle in lint
    images = jobs["images"]
    dockerfiles = {i["dockerfile"] for i in images["strategy"]["matrix"]["include"]}
    assert dockerfiles == {"images/core.Dockerfile", "operator/Dockerfile"}
    e2e = jobs["e2e-kind"]
    assert e2e["needs"] == ["images"]
    text = steps_text(e2e)
    for needle in ("helm/kind-action", "kind load image-archive", "helm install", "pytest -q e2e"):
        assert needle in text


def test_pinned_tool_versions_match_the_local_toolchain() -> None:
    env = ci()["env"]
    build = (ROOT / "e2e" / "k8s" / "build.sh").read_text()
    assert f"HELM_VERSION=${{HELM_VERSION:-{env['HELM_VERSION']}}}" in build
