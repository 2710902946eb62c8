"""manifests/: kustomize base + overlays, generated from the chart and equal to it."""

from __future__ import annotations

import importlib.util
from types import ModuleType
from typing import Any

import pytest
import yaml

from .tools import (
    ENVIRONMENTS,
    MANIFESTS,
    assert_restricted,
    helm_template,
    load_all,
    pod_specs,
    require_tool,
    run,
)

HELM_LABELS = ("helm.sh/chart", "app.kubernetes.io/managed-by")


def render_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("novacron_render", MANIFESTS / "render.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def helm() -> str:
    return require_tool("helm")


@pytest.fixture(scope="module")
def kubectl() -> str:
    return require_tool("kubectl")


def kustomize(kubectl: str, path: str) -> list[dict[str, Any]]:
    return load_all(run([kubectl, "kustomize", str(MANIFESTS / path)]).stdout)


def test_generated_files_are_fresh(helm: str) -> None:
    render = render_module()
    stale = [
        str(path.relative_to(render.ROOT))
        for path, text in render.render(helm).items()
        if not path.exists() or path.read_text() != text
    ]
    assert not stale, f"run `python manifests/render.py`: stale {stale}"


def index(objs: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    out = {}
    for obj in objs:
        for labels in (obj["metadata"].get("labels"), template_labels(obj)):
            for key in HELM_LABELS:
                (labels or {}).pop(key, None)
        out[(obj["kind"], obj["metadata"]["name"])] = obj
    return out


def template_labels(obj: dict[str, Any]) -> dict[str, str] | None:
    spec = obj.get("spec")
    if isinstance(spec, dict) and isinstance(spec.get("template"), dict):
        labels: dict[str, str] | None = spec["template"].get("metadata", {}).get("labels")
        return labels
    return None


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_overlay_equals_chart(helm: str, kubectl: str, env: str) -> None:
    built = index(kustomize(kubectl, f"overlays/{env}"))
    namespace = built.pop(("Namespace", "novacron"))
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    crds = {k: built.pop(k) for k in list(built) if k[0] == "CustomResourceDefinition"}
    assert len(crds) == 3
    charted = index(helm_template(helm, f"values-{env}.yaml"))
    assert sorted(built) == sorted(charted)
    for key, obj in charted.items():
        assert built[key] == obj, f"{env}: {key} differs from the chart's rendering"


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_overlay_pods_are_restricted(kubectl: str, env: str) -> None:
    objs = kustomize(kubectl, f"overlays/{env}")
    for name, spec in pod_specs(objs):
        assert_restricted(name, spec)


def test_crds_kustomization_builds(kubectl: str) -> None:
    objs = kustomize(kubectl, "crds")
    assert {o["spec"]["names"]["kind"] for o in objs} == {
        "NovaCronCluster",
        "NovaCronRegion",
        "DWCPFederation",
    }


def test_production_overlay_has_five_replicas_per_region(kubectl: str) -> None:
    objs = kustomize(kubectl, "overlays/production")
    regions = [o for o in objs if o["kind"] == "NovaCronRegion"]
    assert regions
    assert all(r["spec"]["replicas"] == 5 for r in regions)
    assert yaml.safe_dump(regions)  # serialisable as applied
