"""The Helm chart: lint, render, schema, security contexts, RBAC, production shape."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from .tools import (
    CHART,
    ROOT,
    VALUES_FILES,
    assert_restricted,
    helm_template,
    pod_specs,
    require_tool,
    run,
)

BAD_VALUES = sorted((Path(__file__).parent / "bad-values").glob("*.yaml"))
# Kinds whose schemas kubernetes-validate ships; CRs and monitoring.coreos.com are checked
# by the API server in the e2e tests.
BUILTIN_GROUPS = {"v1", "apps/v1", "policy/v1", "networking.k8s.io/v1", "autoscaling/v2"}
BUILTIN_GROUPS |= {"rbac.authorization.k8s.io/v1"}


@pytest.fixture(scope="module")
def helm() -> str:
    return require_tool("helm")


def expected_message(path: Path) -> str:
    first = path.read_text().splitlines()[0]
    assert first.startswith("# expect: "), f"{path.name} must start with '# expect: <message>'"
    return first.removeprefix("# expect: ")


@pytest.mark.parametrize("values", VALUES_FILES)
def test_helm_lint_strict(helm: str, values: str) -> None:
    proc = run([helm, "lint", str(CHART), "--strict", "-f", str(CHART / values)])
    assert "0 chart(s) failed" in proc.stdout


@pytest.mark.parametrize("values", VALUES_FILES)
def test_rendered_objects_are_valid_and_restricted(helm: str, values: str) -> None:
    objs = helm_template(helm, values)
    assert objs, "nothing rendered"
    for obj in objs:
        assert obj["metadata"]["name"], obj
        if obj["apiVersion"] in BUILTIN_GROUPS:
            kubernetes_validate.validate(obj, "1.36.0", strict=True)
    specs = pod_specs(objs)
    assert specs, "no pod template rendered"
    for name, spec in specs:
        assert_restricted(name, spec)


@pytest.mark.parametrize("bad", BAD_VALUES, ids=[p.stem for p in BAD_VALUES])
def test_schema_rejects_bad_values_in_helm(helm: str, bad: Path) -> None:
    proc = run([helm, "template", "x", str(CHART), "-f", str(bad)], check=False)
    assert proc.returncode != 0, f"{bad.name} was accepted"
    assert "values don't meet the specifications of the schema" in proc.stderr
    assert expected_message(bad) in proc.stderr


def test_at_least_five_bad_values_files() -> None:
    assert len(BAD_VALUES) >= 5


@pytest.mark.parametrize("bad", BAD_VALUES, ids=[p.stem for p in BAD_VALUES])
def test_schema_rejects_bad_values_offline(bad: Path) -> None:
    """Same files through jsonschema, so the schema is checked even without helm."""
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    merged = deep_merge(values, yaml.safe_load(bad.read_text()))
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(merged, schema)


@pytest.mark.parametrize("values", VALUES_FILES)
def test_schema_accepts_shipped_values(values: str) -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    merged = yaml.safe_load((CHART / "values.yaml").read_text())
    if values != "values.yaml":
        merged = deep_merge(merged, yaml.safe_load((CHART / values).read_text()))
    jsonschema.validate(merged, schema)


def deep_merge(base: Any, over: Any) -> Any:
    if isinstance(base, dict) and isinstance(over, dict):
        out = dict(base)
        for k, v in over.items():
            out[k] = deep_merge(base.get(k), v) if k in base else v
        return out
    return over


def test_chart_crds_are_the_generated_ones() -> None:
    """charts/novacron/crds and manifests/crds are copies of crds/ (sync-crds.sh)."""
    generated = {p.name: p.read_text() for p in sorted((ROOT / "crds").glob("*.yaml"))}
    assert generated, "crds/ is empty: run make crds"
    for copy_dir in (CHART / "crds", ROOT / "manifests" / "crds"):
        copies = {
            p.name: p.read_text()
            for p in sorted(copy_dir.glob("*.yaml"))
            if p.name != "kustomization.yaml"
        }
        assert copies == generated, f"{copy_dir} drifted: run charts/novacron/sync-crds.sh"
    kust = yaml.safe_load((ROOT / "manifests" / "crds" / "kustomization.yaml").read_text())
    assert sorted(kust["resources"]) == sorted(generated)


def by_kind(objs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objs if o["kind"] == kind]


def test_operator_deployment_is_ha_with_leader_election(helm: str) -> None:
    objs = helm_template(helm, "values-production.yaml")
    (dep,) = by_kind(objs, "Deployment")
    assert dep["spec"]["replicas"] == 2
    args = dep["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--lease-name=novacron-operator" in args
    assert "--lease-namespace=novacron" in args
    assert "--identity=$(POD_NAME)" in args
    (pdb,) = by_kind(objs, "PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1
    roles = {r["metadata"]["name"]: r for r in by_kind(objs, "Role")}
    assert roles["novacron-operator-leader-election"]["rules"] == [
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "verbs": ["get", "create", "update"],
        }
    ]


def test_operator_args_parse_with_the_operators_own_cli(helm: str) -> None:
    from novacron_operator.__main__ import parse

    objs = helm_template(helm, "values-production.yaml")
    (dep,) = by_kind(objs, "Deployment")
    args = dep["spec"]["template"]["spec"]["containers"][0]["args"]
    parsed = parse(args)
    assert parsed.namespace == ["novacron"]
    assert parsed.health_port == 8080
    assert parsed.lease_seconds == 15


def test_rbac_is_namespaced_but_a_read_only_crd_watch_and_has_no_wildcards(helm: str) -> None:
    objs = helm_template(helm, None)
    (cluster_role,) = by_kind(objs, "ClusterRole")
    assert cluster_role["rules"] == [
        {
            "apiGroups": ["apiextensions.k8s.io"],
            "resources": ["customresourcedefinitions"],
            "verbs": ["list", "watch"],
        },
        {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["list", "watch"]},
    ]
    roles = {r["metadata"]["name"]: r for r in by_kind(objs, "Role")}
    main = roles["novacron-operator"]
    granted = {
        (g, r) for rule in main["rules"] for g in rule["apiGroups"] for r in rule["resources"]
    }
    assert ("novacron.io", "novacronregions/status") in granted
    assert ("", "pods") in granted
    assert ("", "nodes") not in granted
    for rule in main["rules"]:
        assert "*" not in rule["verbs"], rule
        assert "*" not in rule["resources"], rule
    pods = next(r for r in main["rules"] if r["resources"] == ["pods"])
    assert pods["verbs"] == ["list", "watch"]  # the sequencer follows pods; it never deletes one
    status = next(r for r in main["rules"] if r["resources"][0].endswith("/status"))
    assert status["verbs"] == ["patch"]


def test_watch_and_agent_namespaces_get_one_role_each(helm: str) -> None:
    cmd = [helm, "template", "novacron", str(CHART), "-n", "ops", "--kube-version", "1.36.0"]
    cmd += ["--set", "operator.watchNamespaces={team-a,team-b}"]
    cmd += ["--set", "operator.agentNamespace=novacron-agents"]
    objs = [o for o in yaml.safe_load_all(run(cmd).stdout) if o]
    bindings = {
        (r["metadata"]["namespace"], r["metadata"]["name"]) for r in by_kind(objs, "RoleBinding")
    }
    assert bindings == {
        ("team-a", "novacron-operator"),
        ("team-b", "novacron-operator"),
        ("ops", "novacron-operator-leader-election"),
        ("novacron-agents", "novacron-operator-agents"),
    }
    (dep,) = by_kind(objs, "Deployment")
    args = dep["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--namespace=team-a" in args
    assert "--namespace=team-b" in args
    assert "--agent-namespace=novacron-agents" in args


def test_production_shape(helm: str) -> None:
    objs = helm_template(helm, "values-production.yaml")
    regions = by_kind(objs, "NovaCronRegion")
    assert len(regions) >= 2
    for region in regions:
        spec = region["spec"]
        assert spec["replicas"] == 5
        assert len(spec["zones"]) >= 3
        assert "gateway" not in spec  # no `novacron gateway` yet: the CRD refuses the field
        assert spec["resources"]["cpu"]
        assert spec["resources"]["memory"]
        assert spec["clusterRef"] == {"name": "novacron"}
    (fed,) = by_kind(objs, "DWCPFederation")
    assert {m["name"] for m in fed["spec"]["members"]} == {r["metadata"]["name"] for r in regions}
    policies = {p["metadata"]["name"]: p["spec"] for p in by_kind(objs, "NetworkPolicy")}
    deny = policies["novacron-default-deny"]
    assert deny == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    assert any(name.endswith("allow-dns") for name in policies)
    assert by_kind(objs, "ServiceMonitor")
    assert by_kind(objs, "PrometheusRule")
    dashboards = [c for c in by_kind(objs, "ConfigMap") if "dashboard" in c["metadata"]["name"]]
    names = {c["metadata"]["name"].removeprefix("novacron-dashboard-") for c in dashboards}
    assert names == {"global", "regional", "protocol", "load-balancer", "operator"}
    for cm in dashboards:
        assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
        for text in cm["data"].values():
            assert json.loads(text)["panels"]


def test_prometheus_rules_are_well_formed(helm: str) -> None:
    objs = helm_template(helm, "values-production.yaml")
    (rule,) = by_kind(objs, "PrometheusRule")
    alerts = [r for g in rule["spec"]["groups"] for r in g["rules"] if "alert" in r]
    assert len(alerts) >= 5
    for alert in alerts:
        assert alert["alert"][0].isupper()
        assert alert["expr"].strip()
        assert alert["labels"]["severity"] in {"critical", "warning"}
        assert alert["annotations"]["summary"]


def test_sync_waves_order_operator_before_resources(helm: str) -> None:
    objs = helm_template(helm, "values-production.yaml")
    for obj in objs:
        wave = int(obj["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"])
        assert wave == (1 if obj["apiVersion"].startswith("novacron.io/") else 0), obj["kind"]


def test_every_promql_expression_parses(helm: str) -> None:
    """Alert rules and dashboard queries parse as PromQL (promql-parser, a real parser)."""
    promql_parser = pytest.importorskip(
        "promql_parser", reason="promql-parser (a dev dependency) is not installed"
    )
    objs = helm_template(helm, "values-production.yaml")
    exprs = []
    (rule,) = by_kind(objs, "PrometheusRule")
    exprs += [
        (r.get("alert") or r["record"], r["expr"])
        for g in rule["spec"]["groups"]
        for r in g["rules"]
    ]
    for cm in by_kind(objs, "ConfigMap"):
        for text in cm["data"].values():
            for panel in json.loads(text)["panels"]:
                exprs += [(panel["title"], t["expr"]) for t in panel["targets"]]
    assert len(exprs) > 15
    for name, expr in exprs:
        try:
            promql_parser.parse(expr)
        except Exception as exc:
            raise AssertionError(f"{name}: {expr}: {exc}") from exc
