"""Builders are pure: fixed inputs give the golden manifests, valid for Kubernetes 1.36."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from cryptography import x509
from novacron_operator import capabilities
from novacron_operator.builders import Owner, build_ca_secret, build_federation, build_region
from novacron_operator.builders.federation import LocalRegion
from novacron_operator.builders.region import RegionContext
from novacron_operator.models import (
    DWCPFederationSpec,
    NovaCronClusterSpec,
    NovaCronRegionSpec,
    effective,
)

GOLDEN = Path(__file__).parent / "golden"
K8S = "1.36.0"
CLUSTER = NovaCronClusterSpec.model_validate({"version": "0.1.0"})
OWNER = Owner("NovaCronRegion", "us-east", "prod", "11111111-2222-3333-4444-555555555555")
REGION = NovaCronRegionSpec.model_validate(
    {"clusterRef": {"name": "fleet"}, "regionName": "us-east", "zones": ["us-east-a", "us-east-b"]}
)
FED_OWNER = Owner("DWCPFederation", "global", "prod", "99999999-2222-3333-4444-555555555555")
FEDERATION = DWCPFederationSpec.model_validate(
    {
        "clusterRef": {"name": "fleet"},
        "members": [
            {"name": "us-east", "regionRef": {"name": "us-east"}},
            {"name": "eu-west", "endpoints": [{"host": "eu.example.net", "port": 7000}]},
        ],
    }
)


def region(**changes: Any) -> list[dict[str, Any]]:
    spec = REGION.model_copy(update=changes)
    return build_region(OWNER, spec, RegionContext(CLUSTER, "fleet"))


def by_kind(objs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objs if o["kind"] == kind]


def check_golden(name: str, objs: list[dict[str, Any]]) -> None:
    text = yaml.safe_dump_all(objs, sort_keys=True)
    path = GOLDEN / f"{name}.yaml"
    if os.environ.get("UPDATE_GOLDEN"):
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
    assert text == path.read_text(), f"{path} differs: rerun with UPDATE_GOLDEN=1 and review"


LOCAL = {"us-east": LocalRegion("us-east", 3)}


def federated_region() -> list[dict[str, Any]]:
    return build_region(OWNER, REGION, RegionContext(CLUSTER, "fleet", federation="global"))


def test_the_wire_port_is_where_the_rendered_node_listens() -> None:
    """The node's wire API listens at its HTTP port + --wire-port-offset (default 1); the
    StatefulSet, both Services and the NetworkPolicy expose exactly that port."""
    from novacron_core.runtime.settings import NodeSettings

    objs = federated_region()
    config = json.loads(by_kind(objs, "ConfigMap")[0]["data"]["node.json"])
    http_port = int(config["http_listen"].rsplit(":", 1)[1])
    offset = NodeSettings(node_id="x", data_dir="/tmp/x").wire_port_offset
    assert "wire_port_offset" not in config  # so the default holds
    wire = http_port + offset
    (sts,) = by_kind(objs, "StatefulSet")
    ports = sts["spec"]["template"]["spec"]["containers"][0]["ports"]
    assert {"name": "wire", "containerPort": wire} in ports
    for svc in by_kind(objs, "Service"):
        if svc["metadata"]["labels"].get("app.kubernetes.io/component") == "node":
            assert {"name": "wire", "port": wire, "targetPort": "wire"} in svc["spec"]["ports"]
    policy = next(p for p in by_kind(objs, "NetworkPolicy") if "node" in json.dumps(p))
    allowed = {p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"]}
    assert wire in allowed


def test_region_manifests_match_golden() -> None:
    check_golden("region", federated_region())


def test_federation_manifests_match_golden() -> None:
    check_golden("federation", build_federation(FED_OWNER, FEDERATION, LOCAL))


@pytest.mark.parametrize(
    "obj",
    federated_region() + build_federation(FED_OWNER, FEDERATION, LOCAL),
    ids=lambda o: f"{o['kind']}/{o['metadata']['name']}",
)
def test_every_builtin_manifest_valid_for_pinned_kubernetes(obj: dict[str, Any]) -> None:
    kubernetes_validate.validate(obj, K8S, strict=True)


def test_every_child_owned_by_its_resource_and_labelled_for_pruning() -> None:
    for obj in region():
        meta = obj["metadata"]
        assert meta["ownerReferences"][0]["uid"] == OWNER.uid
        assert meta["labels"]["novacron.io/owner"] == OWNER.uid


def test_region_produces_all_children_once() -> None:
    kinds = sorted(o["kind"] for o in region())
    assert kinds == sorted(
        ["ServiceAccount"] * 3
        + ["ConfigMap", "ConfigMap", "Service", "Service", "StatefulSet", "PodDisruptionBudget"]
        + ["Deployment", "Service", "HorizontalPodAutoscaler", "NetworkPolicy", "NetworkPolicy"]
        + ["DaemonSet"]
    )
    names = [(o["kind"], o["metadata"]["name"]) for o in region()]
    assert len(names) == len(set(names))


def test_agents_and_gateways_are_not_deployed_while_the_cli_lacks_their_command(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A build whose CLI has no `novacron agent` / `novacron gateway` deploys neither: no
    DaemonSet, Deployment, HPA, gateway Service/ServiceAccount/NetworkPolicy (they would
    crash-loop), and the nodes' pods are the same."""
    assert capabilities.available("agent")
    assert capabilities.available("gateway")
    with_all = region()
    monkeypatch.setattr(capabilities, "cli_commands", lambda: frozenset({"node"}))
    objs = region()
    kinds = sorted(o["kind"] for o in objs)
    assert kinds == sorted(
        [
            *["ServiceAccount", "ConfigMap", "Service", "Service", "StatefulSet"],
            *["PodDisruptionBudget", "NetworkPolicy"],
        ]
    )
    assert not [o for o in objs if "gateway" in o["metadata"]["name"]]
    (cm,) = by_kind(objs, "ConfigMap")
    assert set(cm["data"]) == {"node.json", "cluster-state"}
    assert by_kind(objs, "StatefulSet") == by_kind(with_all, "StatefulSet")


def test_volume_claims_are_kept_when_the_region_is_deleted_unless_asked() -> None:
    (sts,) = by_kind(region(), "StatefulSet")
    policy = sts["spec"]["persistentVolumeClaimRetentionPolicy"]
    assert policy == {"whenDeleted": "Retain", "whenScaled": "Retain"}
    storage = REGION.storage.model_copy(update={"when_deleted": "Delete"})
    (sts,) = by_kind(region(storage=storage), "StatefulSet")
    assert sts["spec"]["persistentVolumeClaimRetentionPolicy"]["whenDeleted"] == "Delete"


def test_region_defaults_fill_what_the_region_leaves_unset() -> None:
    cluster = NovaCronClusterSpec.model_validate(
        {
            "version": "0.1.0",
            "regionDefaults": {
                "replicas": 5,
                "protocol": "epaxos",
                "storage": {"size": "20Gi", "storageClassName": "fast", "whenDeleted": "Delete"},
            },
        }
    )

    def built(**changes: Any) -> dict[str, Any]:
        spec = REGION.model_copy(update=changes)
        (sts,) = by_kind(build_region(OWNER, spec, RegionContext(cluster, "fleet")), "StatefulSet")
        return sts

    sts = built()
    claim = sts["spec"]["volumeClaimTemplates"][0]["spec"]
    assert sts["spec"]["replicas"] == 5
    assert claim["resources"]["requests"]["storage"] == "20Gi"
    assert claim["storageClassName"] == "fast"
    assert sts["spec"]["persistentVolumeClaimRetentionPolicy"]["whenDeleted"] == "Delete"
    # what the region sets wins, field by field
    own = REGION.storage.model_copy(update={"size": "30Gi"})
    sts = built(replicas=3, storage=own)
    claim = sts["spec"]["volumeClaimTemplates"][0]["spec"]
    assert sts["spec"]["replicas"] == 3
    assert (claim["resources"]["requests"]["storage"], claim["storageClassName"]) == (
        "30Gi",
        "fast",
    )
    assert effective(REGION, cluster.region_defaults).protocol == "epaxos"
    assert (
        effective(REGION.model_copy(update={"protocol": "raft"}), cluster.region_defaults).protocol
        == "raft"
    )


def test_a_federation_member_mounts_the_topology_whole_outside_the_config_hash() -> None:
    plain = region()
    objs = federated_region()
    cm = next(o for o in objs if o["metadata"]["name"] == "us-east-config")
    (sts,) = by_kind(objs, "StatefulSet")
    pod = sts["spec"]["template"]["spec"]
    (mount,) = [m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "federation"]
    assert mount == {
        "name": "federation",
        "mountPath": "/etc/novacron/federation",
        "readOnly": True,
    }
    assert "subPath" not in mount  # the kubelet updates the file in place
    (vol,) = [v for v in pod["volumes"] if v["name"] == "federation"]
    assert vol["configMap"] == {"name": "global-topology"}
    node = json.loads(cm["data"]["node.json"])
    assert node["federation_file"] == "/etc/novacron/federation/topology.json"
    plain_cm = next(o for o in plain if o["metadata"]["name"] == "us-east-config")
    assert "federation_file" not in json.loads(plain_cm["data"]["node.json"])
    # the federation's content is in another ConfigMap: changing it changes no pod template
    fed_a = build_federation(FED_OWNER, FEDERATION, LOCAL)
    fed_b = build_federation(
        FED_OWNER,
        FEDERATION.model_copy(
            update={"gossip": FEDERATION.gossip.model_copy(update={"fanout": 5})}
        ),
        LOCAL,
    )
    assert fed_a != fed_b
    assert by_kind(federated_region(), "StatefulSet") == [sts]


def test_topology_lists_each_members_region_and_every_node_peer_address() -> None:
    spec = DWCPFederationSpec.model_validate(
        {
            "clusterRef": {"name": "fleet"},
            "members": [
                {"name": "east", "regionRef": {"name": "us-east"}},
                {"name": "eu-west", "endpoints": [{"host": "eu.example.net", "port": 7000}]},
                {"name": "mars", "regionRef": {"name": "mars"}},
            ],
        }
    )
    (cm,) = build_federation(FED_OWNER, spec, {"us-east": LocalRegion("us-east-1", 5)})
    topo = json.loads(cm["data"]["topology.json"])
    assert set(topo) == {
        "federation", "members", "gossip", "antiEntropy", "replication", "conflictPolicies",
        "failover",
    }  # fmt: skip
    east, eu, mars = topo["members"]
    assert east == {
        "name": "east",
        "region": "us-east-1",
        "local": True,
        "endpoints": [f"us-east-{i}.us-east-peers.prod.svc:7000" for i in range(5)],
        # what a node's 421 wrong-region names, for the client to follow to the home region
        "http": [f"http://us-east-{i}.us-east-peers.prod.svc:8080" for i in range(5)],
    }
    assert eu == {
        "name": "eu-west",
        "region": "eu-west",
        "local": False,
        "endpoints": ["eu.example.net:7000"],
    }
    assert mars["endpoints"] == []  # not a region here: nobody to reach


@pytest.mark.parametrize(("replicas", "quorum"), [(1, 1), (3, 2), (5, 3), (7, 4)])
def test_pdb_keeps_a_majority(replicas: int, quorum: int) -> None:
    (pdb,) = by_kind(region(replicas=replicas), "PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == quorum


def test_config_change_changes_pod_template_hash_but_image_alone_does_not() -> None:
    def digest(objs: list[dict[str, Any]]) -> str:
        (sts,) = by_kind(objs, "StatefulSet")
        return str(sts["spec"]["template"]["metadata"]["annotations"]["novacron.io/config-hash"])

    assert digest(federated_region()) != digest(region())  # node.json gains federation_file
    assert digest(region(image="x/y:2")) == digest(region())
    # scaling keeps the bootstrap peers (the sequencer adds members): no pod rolls
    scaled = REGION.model_copy(update={"replicas": 5})
    ctx = RegionContext(CLUSTER, "fleet", bootstrap_replicas=3)
    assert digest(build_region(OWNER, scaled, ctx)) == digest(region())


def test_node_and_gateway_pods_meet_restricted_and_agents_get_only_the_host_network() -> None:
    objs = region()
    for kind in ("StatefulSet", "Deployment"):
        (w,) = by_kind(objs, kind)
        pod = w["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert not pod.get("hostNetwork")
        for c in pod["containers"]:
            sc = c["securityContext"]
            assert sc["capabilities"] == {"drop": ["ALL"]}
            assert sc["readOnlyRootFilesystem"]
            assert sc["allowPrivilegeEscalation"] is False
            assert sc["seccompProfile"]["type"] == "RuntimeDefault"
    # without tunnels an agent measures and routes: the host's network, nothing else
    (ds,) = by_kind(objs, "DaemonSet")
    pod = ds["spec"]["template"]["spec"]
    assert pod["hostNetwork"] is True
    assert pod["securityContext"]["runAsNonRoot"] is True
    (c,) = pod["containers"]
    assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert not [v for v in pod["volumes"] if "hostPath" in v]
    assert pod["nodeSelector"] == {"topology.kubernetes.io/region": "us-east"}


def test_statefulset_uses_a_partitioned_rollout_probes_and_zone_spread() -> None:
    (sts,) = by_kind(region(), "StatefulSet")
    assert sts["spec"]["updateStrategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"partition": 0},
    }
    ctx = RegionContext(CLUSTER, "fleet", replicas=5, partition=3)
    (held,) = by_kind(build_region(OWNER, REGION, ctx), "StatefulSet")
    assert held["spec"]["updateStrategy"]["rollingUpdate"] == {"partition": 3}
    assert held["spec"]["replicas"] == 5
    c = sts["spec"]["template"]["spec"]["containers"][0]
    assert (c["readinessProbe"]["httpGet"]["path"], c["livenessProbe"]["httpGet"]["path"]) == (
        "/readyz",
        "/healthz",
    )
    spread = sts["spec"]["template"]["spec"]["topologySpreadConstraints"][0]
    assert spread["topologyKey"] == "topology.kubernetes.io/zone"
    assert sts["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"] == {
        "storage": "10Gi"
    }


def test_agent_disabled_drops_daemonset_and_its_account() -> None:
    objs = region(agent=REGION.agent.model_copy(update={"enabled": False}))
    assert not by_kind(objs, "DaemonSet")
    assert all(o["metadata"]["name"] != "us-east-agent" for o in objs)


def test_service_monitor_only_when_crd_exists() -> None:
    ctx = RegionContext(CLUSTER, "fleet", service_monitor_crd=True)
    assert by_kind(build_region(OWNER, REGION, ctx), "ServiceMonitor")
    assert not by_kind(region(), "ServiceMonitor")


def test_ca_secret_holds_a_ca_certificate_valid_for_configured_days() -> None:
    secret = build_ca_secret(Owner("NovaCronCluster", "fleet", "prod", "u"), CLUSTER)
    kubernetes_validate.validate(secret, K8S, strict=True)
    cert = x509.load_pem_x509_certificate(base64.b64decode(secret["data"]["ca.crt"]))
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    days = (cert.not_valid_after_utc - cert.not_valid_before_utc).days
    assert days == CLUSTER.tls.ca_validity_days


def test_agent_in_privileged_namespace_is_unowned_but_labelled() -> None:
    ctx = RegionContext(CLUSTER, "fleet", agent_namespace="novacron-agents")
    objs = build_region(OWNER, REGION, ctx)
    moved = [o for o in objs if o["metadata"]["namespace"] == "novacron-agents"]
    assert sorted(o["kind"] for o in moved) == ["ConfigMap", "DaemonSet", "ServiceAccount"]
    for o in moved:
        assert "ownerReferences" not in o["metadata"]  # cross-namespace owners are invalid
        assert o["metadata"]["labels"]["novacron.io/owner"] == OWNER.uid
        assert o["metadata"]["name"] == "prod-us-east-agent"
    (ds,) = by_kind(moved, "DaemonSet")
    volume = ds["spec"]["template"]["spec"]["volumes"][0]
    assert volume["configMap"]["name"] == "prod-us-east-agent"


def test_gateway_hpa_scales_on_request_rate_when_a_target_is_set() -> None:
    gateway = REGION.gateway.model_copy(update={"target_requests_per_second": 500})
    (hpa,) = [o for o in region(gateway=gateway) if o["kind"] == "HorizontalPodAutoscaler"]
    kinds = [m["type"] for m in hpa["spec"]["metrics"]]
    assert kinds == ["Resource", "Pods"]
    pods = hpa["spec"]["metrics"][1]["pods"]
    assert pods["metric"]["name"] == "novacron_gateway_requests_per_second"
    assert pods["target"] == {"type": "AverageValue", "averageValue": "500"}
    kubernetes_validate.validate(hpa, "1.36", strict=True)


def test_gateway_hpa_uses_cpu_only_without_a_request_rate_target() -> None:
    (hpa,) = [o for o in region() if o["kind"] == "HorizontalPodAutoscaler"]
    assert [m["type"] for m in hpa["spec"]["metrics"]] == ["Resource"]
