"""The chart, the kustomize overlays and argocd/ against a real API server (PodSecurity on).

Helm drives the release through pyhelm3 (install, upgrade, rollback); every rendered object
goes through server-side apply; the operator's ServiceAccount token shows the chart's RBAC
allows what the operator needs and forbids the rest.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
import yaml

from .conftest import Kube, image_overrides, wait_established, wait_for
from .tools import (
    ARGOCD,
    ARGOCD_MODULE,
    CHART,
    ENVIRONMENTS,
    MANIFESTS,
    PROMETHEUS_OPERATOR_MODULE,
    VALUES_FILES,
    go_module_dir,
    load_all,
    run,
)

pytestmark = pytest.mark.e2e
NOVACRON_KINDS = ("novacronclusters", "novacronregions", "dwcpfederations")


@pytest.fixture(scope="module")
def monitoring_crds(kube: Kube) -> None:
    """ServiceMonitor and PrometheusRule CRDs, as a cluster with the Prometheus Operator has."""
    module, version, sub = PROMETHEUS_OPERATOR_MODULE
    crds = go_module_dir(module, version) / sub
    for name in ("servicemonitors", "prometheusrules"):
        path = crds / f"monitoring.coreos.com_{name}.yaml"
        kube.kubectl("apply", "--server-side", "-f", str(path))
    wait_established(kube, "servicemonitors.monitoring.coreos.com")
    wait_established(kube, "prometheusrules.monitoring.coreos.com")


def operator_pods(kube: Kube, namespace: str) -> list[dict[str, Any]]:
    pods = kube.get("pods", "-n", namespace, "-l", "app.kubernetes.io/component=operator")
    items: list[dict[str, Any]] = pods["items"]
    return items


def assert_operator_pods_admitted(kube: Kube, namespace: str, replicas: int) -> None:
    """The ReplicaSet created the pods: PodSecurity "restricted" admitted them."""
    wait_for(
        f"{replicas} operator pod(s) in {namespace}",
        lambda: len(operator_pods(kube, namespace)) == replicas,
    )


def test_pod_security_is_enforced(kube: Kube) -> None:
    ns = kube.restricted_namespace("nc-pss-probe")
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "root", "namespace": ns},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]},
    }
    out = kube.kubectl("apply", "-f", "-", stdin=json.dumps(pod), check=False)
    assert 'violates PodSecurity "restricted:latest"' in out


@pytest.mark.parametrize("values", VALUES_FILES)
def test_every_rendered_object_server_side_applies(
    kube: Kube, monitoring_crds: None, novacron_crds: None, values: str
) -> None:
    env = values.removesuffix(".yaml").removeprefix("values").strip("-") or "default"
    ns = kube.restricted_namespace(f"nc-ssa-{env}")
    cmd = [kube.helm_bin, "template", "novacron", str(CHART), "-n", ns]
    cmd += ["--kube-version", "1.36.0", "-f", str(CHART / values), *image_overrides()]
    rendered = run(cmd).stdout
    out = kube.kubectl(
        "apply", "--server-side", "--force-conflicts", "-n", ns, "-f", "-", stdin=rendered
    )
    objs = load_all(rendered)
    assert out.count("serverside-applied") == len(objs)
    (dep,) = [o for o in objs if o["kind"] == "Deployment"]
    assert_operator_pods_admitted(kube, ns, dep["spec"]["replicas"])
    for kind in NOVACRON_KINDS:
        want = sorted(o["metadata"]["name"] for o in objs if o["kind"].lower() + "s" == kind)
        got = sorted(i["metadata"]["name"] for i in kube.get(kind, "-n", ns)["items"])
        assert got == want


def test_helm_install_upgrade_rollback_with_pyhelm3(kube: Kube, monitoring_crds: None) -> None:
    asyncio.run(helm_lifecycle(kube, kube.restricted_namespace("nc-helm")))


async def helm_lifecycle(kube: Kube, ns: str) -> None:
    from pyhelm3 import Client

    client = Client(kubeconfig=kube.kubeconfig, executable=kube.helm_bin, default_timeout="180s")
    chart = await client.get_chart(CHART)

    flags = image_overrides()
    overrides: dict[str, Any] = {}
    for flag in flags[1::2]:  # "operator.image.tag=x" -> {"operator": {"image": {"tag": x}}}
        path, _, value = flag.partition("=")
        *parents, leaf = path.split(".")
        node = overrides
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value

    def values(name: str) -> dict[str, Any]:
        loaded: dict[str, Any] = yaml.safe_load((CHART / name).read_text())
        return merge(loaded, overrides)

    rev = await client.install_or_upgrade_release(
        "novacron", chart, values("values-dev.yaml"), namespace=ns, wait=True
    )
    assert rev.revision == 1
    assert rev.status.value == "deployed"
    assert_operator_pods_admitted(kube, ns, 1)
    crds = kube.get("crd", "-l", "!nothing")["items"]
    assert {"novacronregions.novacron.io", "dwcpfederations.novacron.io"} <= {
        c["metadata"]["name"] for c in crds
    }
    assert [r["metadata"]["name"] for r in kube.get("novacronregions", "-n", ns)["items"]] == [
        "us-east"
    ]

    rev = await client.install_or_upgrade_release(
        "novacron", chart, values("values-staging.yaml"), namespace=ns, wait=True
    )
    assert rev.revision == 2
    dep = kube.get("deployment", "novacron-operator", "-n", ns)
    assert dep["spec"]["replicas"] == 2
    assert_operator_pods_admitted(kube, ns, 2)
    assert kube.get("networkpolicy", "novacron-default-deny", "-n", ns)
    assert kube.get("servicemonitor", "novacron-operator", "-n", ns)
    regions = {r["metadata"]["name"] for r in kube.get("novacronregions", "-n", ns)["items"]}
    assert regions == {"us-east", "eu-west"}

    release = await client.get_current_revision("novacron", namespace=ns)
    await release.release.rollback(1, wait=True)
    rev = await client.get_current_revision("novacron", namespace=ns)
    assert rev.revision == 3
    assert rev.status.value == "deployed"
    dep = kube.get("deployment", "novacron-operator", "-n", ns)
    assert dep["spec"]["replicas"] == 1
    assert not kube.get("networkpolicies", "-n", ns)["items"]
    assert [r["metadata"]["name"] for r in kube.get("novacronregions", "-n", ns)["items"]] == [
        "us-east"
    ]

    rev = await client.install_or_upgrade_release(
        "novacron", chart, values("values-production.yaml"), namespace=ns, wait=True
    )
    assert rev.revision == 4
    regions_items = kube.get("novacronregions", "-n", ns)["items"]
    assert {r["spec"]["replicas"] for r in regions_items} == {5}
    history = await rev.release.history()
    assert [h.revision for h in history] == [1, 2, 3, 4]
    await rev.release.uninstall(wait=True)


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_kustomize_overlay_server_side_applies(kube: Kube, monitoring_crds: None, env: str) -> None:
    built = kube.kubectl("kustomize", str(MANIFESTS / "overlays" / env))
    out = kube.kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", stdin=built)
    objs = load_all(built)
    assert out.count("serverside-applied") == len(objs)
    ns = kube.get("namespace", "novacron")
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    (dep,) = [o for o in objs if o["kind"] == "Deployment"]
    wait_for(
        f"{env} operator rollout",
        lambda: (
            kube.get("deployment", "novacron-operator", "-n", "novacron")
            .get("status", {})
            .get("readyReplicas")
            == dep["spec"]["replicas"]
        ),
    )
    regions = [o["metadata"]["name"] for o in objs if o["kind"] == "NovaCronRegion"]
    got = {r["metadata"]["name"] for r in kube.get("novacronregions", "-n", "novacron")["items"]}
    assert set(regions) <= got


def argocd_crds(kube: Kube) -> None:
    module, version, sub = ARGOCD_MODULE
    crd_dir = go_module_dir(module, version) / sub
    for path in sorted(crd_dir.glob("*-crd.yaml")):
        kube.kubectl("apply", "--server-side", "-f", str(path))
    for name in ("applications", "applicationsets", "appprojects"):
        wait_established(kube, f"{name}.argoproj.io")


def test_argocd_objects_validate_against_argo_cds_own_schemas(kube: Kube) -> None:
    argocd_crds(kube)
    kube.kubectl("create", "namespace", "argocd")
    built = kube.kubectl("kustomize", str(ARGOCD))
    out = kube.kubectl("apply", "--server-side", "-f", "-", stdin=built)
    assert out.count("serverside-applied") == len(load_all(built))
    example = ARGOCD / "multicluster" / "example" / "clusters.yaml"
    kube.kubectl("apply", "--server-side", "-f", str(example))
    sets = {a["metadata"]["name"] for a in kube.get("applicationsets", "-n", "argocd")["items"]}
    assert sets == {
        "novacron-dev",
        "novacron-staging",
        "novacron-production",
        "novacron-federation-global",
    }
    cm = kube.get("configmap", "argocd-cm", "-n", "argocd")
    script = (ARGOCD / "health" / "novacron.lua").read_text()
    assert cm["data"]["resource.customizations.health.novacron.io_NovaCronRegion"] == script
    # Strict field validation: a typo in an ApplicationSet is rejected by Argo CD's schema.
    bad = yaml.safe_load((ARGOCD / "applicationsets" / "novacron-dev.yaml").read_text())
    bad["metadata"]["name"] = "typo"
    bad["spec"]["generatorz"] = bad["spec"].pop("generators")
    out = kube.kubectl(
        "apply", "--server-side", "-n", "argocd", "-f", "-", stdin=json.dumps(bad), check=False
    )
    assert ".spec.generatorz: field not declared in schema" in out


def test_argocd_lua_sample_objects_match_the_crd_status_schema(kube: Kube) -> None:
    """The statuses the Lua tests feed in are valid NovaCronRegion statuses."""
    from .test_argocd import CASES

    crd = kube.get("crd", "novacronregions.novacron.io")
    status_schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]
    import jsonschema

    for _name, status, _gen, _expected in CASES:
        if status is not None:
            jsonschema.validate(status, strip_k8s_extensions(status_schema))


def strip_k8s_extensions(schema: Any) -> Any:
    if isinstance(schema, dict):
        return {k: strip_k8s_extensions(v) for k, v in schema.items() if not k.startswith("x-")}
    if isinstance(schema, list):
        return [strip_k8s_extensions(v) for v in schema]
    return schema
