"""Every CRD spec field has an effect, or a condition says it has none yet: the rows of
docs/crd-fields.md that no other test covers, and the table itself (every field of the
generated CRDs listed, every test it names existing)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from novacron_operator import crdgen
from novacron_operator.builders import Owner, build_cluster, build_region
from novacron_operator.builders.region import PROTOCOL_ANNOTATION, RegionContext
from novacron_operator.models import DWCPFederationSpec, NovaCronClusterSpec, NovaCronRegionSpec
from novacron_operator.parents import tls_condition, topology_condition, unsupported
from novacron_operator.protocols import bootstrap_protocol, protocol_condition

ROOT = Path(__file__).resolve().parents[2]
OWNER = Owner("NovaCronRegion", "us-east", "prod", "u-1")
REGION = NovaCronRegionSpec.model_validate(
    {"clusterRef": {"name": "fleet"}, "regionName": "us-east", "zones": ["us-east-a"]}
)


def statefulset(cluster: NovaCronClusterSpec, spec: NovaCronRegionSpec = REGION) -> Any:
    objs = build_region(OWNER, spec, RegionContext(cluster, "fleet", service_monitor_crd=True))
    return next(o for o in objs if o["kind"] == "StatefulSet"), objs


def test_cluster_image_version_and_pull_policy_reach_the_node_pods() -> None:
    cluster = NovaCronClusterSpec.model_validate(
        {"version": "1.2.3", "image": "registry.example/nc", "imagePullPolicy": "Always"}
    )
    sts, _ = statefulset(cluster)
    (node,) = sts["spec"]["template"]["spec"]["containers"]
    assert (node["image"], node["imagePullPolicy"]) == ("registry.example/nc:1.2.3", "Always")
    own = REGION.model_copy(update={"image": "other/nc:9.9.9"})
    sts, _ = statefulset(cluster, own)
    assert sts["spec"]["template"]["spec"]["containers"][0]["image"] == "other/nc:9.9.9"


def test_scheduling_and_resources_reach_the_node_pods() -> None:
    spec = NovaCronRegionSpec.model_validate(
        {
            **REGION.model_dump(by_alias=True, exclude_none=True),
            "scheduling": {"nodeSelector": {"disk": "ssd"}, "priorityClassName": "critical"},
            "resources": {"cpu": "2", "memory": "4Gi"},
        }
    )
    sts, _ = statefulset(NovaCronClusterSpec.model_validate({"version": "0.1.0"}), spec)
    pod = sts["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"topology.kubernetes.io/region": "us-east", "disk": "ssd"}
    assert pod["priorityClassName"] == "critical"
    assert pod["containers"][0]["resources"] == {
        "requests": {"cpu": "2", "memory": "4Gi"},
        "limits": {"memory": "4Gi"},
    }


def test_service_monitor_follows_the_cluster_flag_and_scrapes_the_api_port() -> None:
    on = NovaCronClusterSpec.model_validate({"version": "0.1.0"})
    off = NovaCronClusterSpec.model_validate(
        {"version": "0.1.0", "monitoring": {"serviceMonitor": False}}
    )
    monitors = {
        o["metadata"]["labels"]["app.kubernetes.io/component"]: o["spec"]["endpoints"][0]
        for o in statefulset(on)[1]
        if o["kind"] == "ServiceMonitor"
    }
    # the node serves /metrics on its API port: nothing listens anywhere else; the gateway
    # on its admin port (the HPA's request-rate metric comes from there)
    assert set(monitors) == {"node", "gateway"}
    assert (monitors["node"]["port"], monitors["node"]["path"]) == ("api", "/metrics")
    assert (monitors["gateway"]["port"], monitors["gateway"]["path"]) == ("metrics", "/metrics")
    assert not [o for o in statefulset(off)[1] if o["kind"] == "ServiceMonitor"]


def test_cert_manager_mode_asks_cert_manager_for_the_ca_from_the_issuer() -> None:
    spec = NovaCronClusterSpec.model_validate(
        {
            "version": "0.1.0",
            "tls": {"mode": "cert-manager", "issuerRef": {"name": "corp"}, "caValidityDays": 30},
        }
    )
    (cert,) = build_cluster(Owner("NovaCronCluster", "fleet", "prod", "u"), spec)
    assert cert["kind"] == "Certificate"
    assert cert["spec"]["issuerRef"] == {"name": "corp", "kind": "Issuer"}
    assert cert["spec"]["duration"] == "720h"
    generated = NovaCronClusterSpec.model_validate({"version": "0.1.0"})
    assert build_cluster(Owner("NovaCronCluster", "fleet", "prod", "u"), generated) == []


def test_what_the_nodes_do_not_honour_yet_is_reported_field_by_field() -> None:
    tls = tls_condition(NovaCronClusterSpec.model_validate({"version": "0.1.0"}), "fleet")
    assert (tls.status, tls.reason) == (False, "NotImplemented")
    assert "plaintext" in tls.message
    off = NovaCronClusterSpec.model_validate({"version": "0.1.0", "tls": {"mode": "disabled"}})
    assert tls_condition(off, "fleet").status
    fed = DWCPFederationSpec.model_validate(
        {
            "clusterRef": {"name": "fleet"},
            "members": [
                {"name": "a", "endpoints": [{"host": "a", "port": 7000}]},
                {"name": "b", "endpoints": [{"host": "b", "port": 7000}]},
            ],
            "replication": {"mode": "sync", "syncFactor": 1},
        }
    )
    conds = {c.type: c for c in unsupported(fed)}
    assert set(conds) == {
        "ReplicationModeSupported",
        "ConflictPoliciesSupported",
        "FailoverSupported",
    }
    # sync replication is what the nodes do (tests/runtime/test_federated_node.py shows it)
    repl = conds.pop("ReplicationModeSupported")
    assert repl.status
    assert repl.reason == "Sync"
    assert "answered once 1 other region(s) hold it" in repl.message
    # conflict policies are rendered into topology.json and applied live by the nodes
    # (tests/operator/test_conflict_policies_crd.py, e2e/test_conflict_policies.py)
    conflicts = conds.pop("ConflictPoliciesSupported")
    assert (conflicts.status, conflicts.reason) == (True, "AppliedByNodes")
    assert "writes home, default merge, fallback lww, 0 rules" in conflicts.message
    assert all(c.reason == "NotImplemented" and not c.status for c in conds.values())
    asynchronous = fed.model_copy(
        update={"replication": fed.replication.model_copy(update={"mode": "async"})}
    )
    assert {c.type: c for c in unsupported(asynchronous)}["ReplicationModeSupported"].status
    # follows what `novacron node` really reads: its settings model
    from novacron_core.runtime.settings import NodeSettings

    assert topology_condition().status == ("federation_file" in NodeSettings.model_fields)


def test_the_protocol_the_group_was_created_with_is_kept_and_a_change_reported() -> None:
    sts = {"metadata": {"annotations": {PROTOCOL_ANNOTATION: "multi-paxos"}}}
    region = {"metadata": {"annotations": {PROTOCOL_ANNOTATION: "epaxos"}}}
    legacy_sts: dict[str, Any] = {"metadata": {"annotations": {}}}
    new: dict[str, Any] = {"metadata": {}}
    # a new region: created with what it asks, recorded on the region
    assert bootstrap_protocol(new, "epaxos", None) == ("epaxos", True)
    # the region's record wins, then the StatefulSet's; a StatefulSet an operator that
    # rendered no protocol created runs the node's default, raft
    assert bootstrap_protocol(region, "raft", sts) == ("epaxos", False)
    assert bootstrap_protocol(new, "raft", sts) == ("multi-paxos", True)
    assert bootstrap_protocol(new, "epaxos", legacy_sts) == ("raft", True)
    # adaptive cannot run: a new region asking for it gets nothing deployed
    assert bootstrap_protocol(new, "adaptive", None) == (None, False)
    for name in ("raft", "multi-paxos", "epaxos", "eventual"):
        c = protocol_condition(name, name)
        assert (c.type, c.status) == ("ProtocolSupported", True)
        assert f"the nodes run {name}, as asked" in c.message
    assert "membership is fixed" in protocol_condition("epaxos", "epaxos").message
    switch = protocol_condition("multi-paxos", "raft")
    assert (switch.status, switch.reason) == (False, "SwitchNotAvailable")
    assert "spec.protocol multi-paxos" in switch.message
    assert "keep running raft" in switch.message
    adaptive = protocol_condition("adaptive", "raft")
    assert (adaptive.status, adaptive.reason) == (False, "AdaptiveNotAvailable")
    assert "keep running raft" in adaptive.message
    refused = protocol_condition("adaptive", None)
    assert (refused.status, refused.reason) == (False, "AdaptiveNotAvailable")
    assert "nothing is deployed" in refused.message


def test_the_crd_refuses_adaptive_and_a_protocol_edit_saying_why() -> None:
    crds = {c["spec"]["names"]["kind"]: c for c in crdgen.all_crds()}

    def schema(kind: str) -> Any:
        return crds[kind]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]

    region = schema("NovaCronRegion")["spec"]["properties"]["protocol"]
    rules = {r["rule"]: r["message"] for r in region["x-kubernetes-validations"]}
    assert "adaptive is not available yet" in rules["self != 'adaptive'"]
    edit = rules["self == oldSelf || oldSelf == 'adaptive'"]
    assert "protocol is fixed once the region exists" in edit
    assert "live switch" in edit
    defaults = schema("NovaCronCluster")["spec"]["properties"]["regionDefaults"]["properties"]
    (rule,) = defaults["protocol"]["x-kubernetes-validations"]
    assert rule["rule"] == "self != 'adaptive'"


def spec_fields() -> set[str]:
    """``Kind spec.a.b`` for every field of the generated CRDs."""

    def walk(schema: dict[str, Any], prefix: str) -> list[str]:
        out = []
        for name, sub in (schema.get("properties") or {}).items():
            path = f"{prefix}.{name}"
            out.append(path)
            if sub.get("properties"):
                out += walk(sub, path)
            if (sub.get("items") or {}).get("properties"):
                out += walk(sub["items"], path + "[]")
        return out

    found = set()
    for crd in crdgen.all_crds():
        kind = crd["spec"]["names"]["kind"]
        spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
        found |= {f"{kind} {p}" for p in walk(spec, "spec")}
    return found


def test_the_field_table_lists_every_spec_field_with_a_test_that_exists() -> None:
    text = (ROOT / "docs" / "crd-fields.md").read_text()
    rows = re.findall(r"^\| `(\w+)` \| `([^`]+)` \| (.+?) \| (.+?) \|$", text, re.M)
    listed = {f"{kind} {field}" for kind, field, _, _ in rows}
    fields = spec_fields()
    leaves = {f for f in fields if not any(o.startswith((f + ".", f + "[].")) for o in fields)}
    assert leaves - listed == set(), "fields without a row"
    assert listed - spec_fields() == set(), "rows for fields the CRDs do not have"
    sources = "".join(
        p.read_text() for d in ("tests", "e2e") for p in (ROOT / d).rglob("test_*.py")
    )
    for kind, field, _, tests in rows:
        names = re.findall(r"`(test_\w+)`", tests)
        assert names, f"{kind} {field}: no test named"
        for name in names:
            assert f"def {name}(" in sources, f"{kind} {field}: {name} does not exist"
