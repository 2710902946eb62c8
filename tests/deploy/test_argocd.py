"""argocd/: Lua health checks under a real Lua 5.1 (Argo CD's gopher-lua dialect), and the
Argo CD objects' structure (waves, cluster generator, multi-cluster values)."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from .tools import ARGOCD, CHART, ENVIRONMENTS, ROOT, helm_template, load_all, require_tool, run

KINDS = ("NovaCronCluster", "NovaCronRegion", "DWCPFederation")
HEALTH_KEY = "resource.customizations.health.novacron.io_{}"


def lua_health(script: str, obj: dict[str, Any]) -> dict[str, str]:
    from lupa import lua51

    lua = lua51.LuaRuntime(unpack_returned_tuples=True)
    lua.globals().obj = lua.table_from(obj, recursive=True)
    # Argo CD runs the script as a chunk with `obj` in scope and reads the returned table.
    result = lua.execute(script)
    return {"status": result["status"], "message": result["message"]}


def cond(kind: str, status: str, reason: str = "", message: str = "") -> dict[str, str]:
    return {"type": kind, "status": status, "reason": reason, "message": message}


def resource(kind: str, status: dict[str, Any] | None, generation: int = 1) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "novacron.io/v1alpha1",
        "kind": kind,
        "metadata": {"name": "x", "generation": generation},
        "spec": {},
    }
    if status is not None:
        obj["status"] = status
    return obj


READY = [cond("Ready", "True", "AllReady", "5/5 nodes ready, leader node-0")]
CASES = [
    ("no status yet", None, 1, "Progressing"),
    (
        "ready",
        {"observedGeneration": 2, "conditions": [*READY, cond("Progressing", "False")]},
        2,
        "Healthy",
    ),
    ("stale generation", {"observedGeneration": 1, "conditions": READY}, 2, "Progressing"),
    (
        "rolling",
        {
            "observedGeneration": 3,
            "conditions": [
                cond("Ready", "True"),
                cond("Progressing", "True", "RollingUpgrade", "2/5 pods updated"),
            ],
        },
        3,
        "Progressing",
    ),
    (
        "degraded wins",
        {
            "observedGeneration": 1,
            "conditions": [
                cond("Ready", "False", "NoQuorum"),
                cond("Progressing", "True"),
                cond("Degraded", "True", "NoQuorum", "2/5 nodes ready: no quorum"),
            ],
        },
        1,
        "Degraded",
    ),
    (
        "stalled",
        {"observedGeneration": 1, "conditions": [cond("Ready", "False", "ImagePullBackOff")]},
        1,
        "Degraded",
    ),
    ("no conditions", {"observedGeneration": 1, "conditions": []}, 1, "Progressing"),
]


@pytest.fixture(scope="module")
def argocd_cm() -> dict[str, str]:
    kubectl = require_tool("kubectl")
    objs = load_all(run([kubectl, "kustomize", str(ARGOCD)]).stdout)
    (cm,) = [o for o in objs if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "argocd-cm"]
    data: dict[str, str] = cm["data"]
    return data


def test_every_kind_has_the_health_script(argocd_cm: dict[str, str]) -> None:
    script = (ARGOCD / "health" / "novacron.lua").read_text()
    for kind in KINDS:
        assert argocd_cm[HEALTH_KEY.format(kind)] == script


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    ("status", "generation", "expected"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_lua_health(
    kind: str, status: dict[str, Any] | None, generation: int, expected: str
) -> None:
    script = (ARGOCD / "health" / "novacron.lua").read_text()
    health = lua_health(script, resource(kind, status, generation))
    assert health["status"] == expected
    assert health["message"]


def test_lua_health_message_comes_from_the_condition() -> None:
    script = (ARGOCD / "health" / "novacron.lua").read_text()
    status = {
        "observedGeneration": 1,
        "conditions": [cond("Degraded", "True", "R", "lost us-east")],
    }
    assert lua_health(script, resource("DWCPFederation", status))["message"] == "lost us-east"


def test_application_health_script() -> None:
    script = (ARGOCD / "health" / "application.lua").read_text()
    app = {"status": {"health": {"status": "Healthy", "message": "ok"}}}
    assert lua_health(script, app)["status"] == "Healthy"
    assert lua_health(script, {})["status"] == "Progressing"


def applicationsets() -> list[dict[str, Any]]:
    paths = sorted((ARGOCD / "applicationsets").glob("*.yaml"))
    paths.append(ARGOCD / "multicluster" / "applicationset.yaml")
    return [yaml.safe_load(p.read_text()) for p in paths]


def test_one_applicationset_per_environment_with_waves() -> None:
    sets = {a["metadata"]["name"]: a for a in applicationsets()}
    for env in ENVIRONMENTS:
        appset = sets[f"novacron-{env}"]
        matrix = appset["spec"]["generators"][0]["matrix"]["generators"]
        clusters = matrix[0]["clusters"]["selector"]["matchLabels"]
        assert clusters == {"novacron.io/environment": env}
        waves = {e["component"]: int(e["wave"]) for e in matrix[1]["list"]["elements"]}
        assert waves["crds"] < waves["operator"] < waves["resources"]
        assert f"values-{env}.yaml" in appset["spec"]["templatePatch"]
        steps = appset["spec"]["strategy"]["rollingSync"]["steps"]
        assert [s["matchExpressions"][0]["values"] for s in steps] == [
            ["crds"],
            ["operator"],
            ["resources"],
        ]


def test_value_files_named_by_argocd_exist() -> None:
    for rel in ("values-dev.yaml", "values-staging.yaml", "values-production.yaml"):
        assert (CHART / rel).is_file()
    for rel in ("federation.yaml", "clusters/cluster-a.yaml", "clusters/cluster-b.yaml"):
        assert (ARGOCD / "multicluster" / rel).is_file()
    assert (ROOT / "manifests" / "crds" / "kustomization.yaml").is_file()


def multicluster_render(helm: str, cluster: str) -> list[dict[str, Any]]:
    mc = ARGOCD / "multicluster"
    cmd = [helm, "template", "novacron", str(CHART), "-n", "novacron", "--kube-version", "1.36.0"]
    for f in (
        CHART / "values-production.yaml",
        mc / "federation.yaml",
        mc / "clusters" / f"{cluster}.yaml",
    ):
        cmd += ["-f", str(f)]
    cmd += ["--set", "operator.enabled=false"]
    return load_all(run(cmd).stdout)


def test_multicluster_each_cluster_hosts_its_regions_and_shares_the_federation() -> None:
    helm = require_tool("helm")
    example = load_all((ARGOCD / "multicluster" / "example" / "clusters.yaml").read_text())
    clusters = [s["stringData"]["name"] for s in example]
    assert len(clusters) == 2
    hosted: dict[str, set[str]] = {}
    members: dict[str, list[str]] = {}
    for cluster in clusters:
        objs = multicluster_render(helm, cluster)
        hosted[cluster] = {o["metadata"]["name"] for o in objs if o["kind"] == "NovaCronRegion"}
        (fed,) = [o for o in objs if o["kind"] == "DWCPFederation"]
        members[cluster] = [m["name"] for m in fed["spec"]["members"]]
        for m in fed["spec"]["members"]:
            assert ("regionRef" in m) == (m["name"] in hosted[cluster]), (cluster, m)
    assert members[clusters[0]] == members[clusters[1]]
    assert not hosted[clusters[0]] & hosted[clusters[1]]
    assert hosted[clusters[0]] | hosted[clusters[1]] == set(members[clusters[0]])


def test_chart_sync_waves_inside_one_application() -> None:
    helm = require_tool("helm")
    for obj in helm_template(helm, "values-staging.yaml"):
        wave = obj["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"]
        assert wave == ("1" if obj["apiVersion"].startswith("novacron.io/") else "0")


def component_parameters(appset: dict[str, Any]) -> dict[str, list[str]]:
    """The helm --set flags each generated Application passes, per component."""
    import json
    import re

    out: dict[str, list[str]] = {}
    elements = appset["spec"]["generators"][0]["matrix"]["generators"][1]["list"]["elements"]
    patch = appset["spec"]["templatePatch"]
    for element in elements:
        component = element["component"]
        if component == "crds":
            continue
        if "parameters" in element:
            params = json.loads(element["parameters"])
        else:  # multicluster: parameters written inline per component in the templatePatch
            branch = patch.split('{{- if eq .component "operator" }}')[1]
            operator_part, resources_part = branch.split("{{- else }}")
            part = operator_part if component == "operator" else resources_part
            params = dict(re.findall(r'\{name: ([\w.]+), value: "([^"]*)"\}', part))
        out[component] = [f"{k}={v}" for k, v in params.items()]
    return out


@pytest.mark.parametrize("appset", applicationsets(), ids=lambda a: a["metadata"]["name"])
def test_operator_and_resources_applications_split_the_chart(appset: dict[str, Any]) -> None:
    """The operator Application renders no NovaCron resource, the resources Application
    nothing but them: together they are the whole chart, each object in one wave."""
    helm = require_tool("helm")
    values = "values-production.yaml"
    for env in ENVIRONMENTS:
        if appset["metadata"]["name"] == f"novacron-{env}":
            values = f"values-{env}.yaml"
    extra = []
    if "multicluster" in appset["spec"]["templatePatch"]:
        extra = ["-f", str(ARGOCD / "multicluster" / "federation.yaml")]
        extra += ["-f", str(ARGOCD / "multicluster" / "clusters" / "cluster-b.yaml")]
    kinds: dict[str, set[str]] = {}
    for component, params in component_parameters(appset).items():
        cmd = [helm, "template", "novacron", str(CHART), "--kube-version", "1.36.0"]
        cmd += ["--skip-crds", "-f", str(CHART / values), *extra]
        for p in params:
            cmd += ["--set", p]
        kinds[component] = {o["kind"] for o in load_all(run(cmd).stdout)}
    novacron = {"NovaCronCluster", "NovaCronRegion", "DWCPFederation"}
    assert kinds["resources"] == novacron
    assert "Deployment" in kinds["operator"]
    assert not kinds["operator"] & novacron
