"""The operator on a real API server: CRD validation, reconcile to Ready on kwok nodes,
rollouts, drift repair, garbage collection, RBAC and leader election."""

from __future__ import annotations

import json
import signal
import time
from typing import Any

import pytest
import yaml
from conftest import ROOT, Deployment, Kubectl, wait_for
from novacron_operator.builders import Owner
from novacron_operator.builders.region import RegionContext, agent
from novacron_operator.models import NovaCronClusterSpec, NovaCronRegionSpec

pytestmark = pytest.mark.e2e
EXAMPLE = list(yaml.safe_load_all((ROOT / "examples" / "three-region.yaml").read_text()))
REGIONS = ["us-east", "eu-west", "ap-south"]
OWNED_KINDS = (
    "configmaps,secrets,services,serviceaccounts,statefulsets,daemonsets,deployments,"
    "poddisruptionbudgets,horizontalpodautoscalers,networkpolicies,pods,persistentvolumeclaims"
)


def region(**spec: Any) -> dict[str, Any]:
    base = {"clusterRef": {"name": "fleet"}, "regionName": "r1", "zones": ["z1"], **spec}
    return {
        "apiVersion": "novacron.io/v1alpha1",
        "kind": "NovaCronRegion",
        "metadata": {"name": "bad"},
        "spec": base,
    }


def federation(**spec: Any) -> dict[str, Any]:
    members = [{"name": n, "regionRef": {"name": n}} for n in ("a", "b", "c")]
    base = {"clusterRef": {"name": "fleet"}, "members": members, **spec}
    return {
        "apiVersion": "novacron.io/v1alpha1",
        "kind": "DWCPFederation",
        "metadata": {"name": "bad"},
        "spec": base,
    }


def cluster(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "novacron.io/v1alpha1",
        "kind": "NovaCronCluster",
        "metadata": {"name": "bad"},
        "spec": {"version": "1.0.0", **spec},
    }


ENDPOINT = {"host": "x", "port": 7000}
INVALID = {
    "replicas-even": (region(replicas=4), "spec.replicas", "odd"),
    "replicas-above-7": (region(replicas=9), "spec.replicas", "7"),
    "replicas-zero": (region(replicas=0), "spec.replicas", "1"),
    "protocol-enum": (region(protocol="gossip"), "spec.protocol", "raft"),
    "region-name-pattern": (region(regionName="Bad_Name"), "spec.regionName", ""),
    "zones-empty": (region(zones=[]), "spec.zones", ""),
    "gateway-while-no-gateway-command": (
        region(gateway={"minReplicas": 1}),
        "spec.gateway",
        "unknown field",
    ),
    "when-deleted-enum": (
        region(storage={"whenDeleted": "Forget"}),
        "spec.storage.whenDeleted",
        "Retain",
    ),
    "storage-quantity": (region(storage={"size": "ten gigs"}), "spec.storage.size", ""),
    "unknown-field": (region(colour="blue"), "spec.colour", "unknown field"),
    "sync-factor-above-members": (
        federation(replication={"mode": "sync", "syncFactor": 3}),
        "spec.replication.syncFactor",
        "members",
    ),
    "sync-mode-needs-factor": (
        federation(replication={"mode": "sync", "syncFactor": 0}),
        "spec.replication.syncFactor",
        "at least 1",
    ),
    "member-names-unique": (
        federation(
            members=[
                {"name": "a", "regionRef": {"name": "a"}},
                {"name": "a", "endpoints": [ENDPOINT]},
            ]
        ),
        "spec.members",
        "unique",
    ),
    "member-ref-xor-endpoints": (
        federation(members=[{"name": "a", "regionRef": {"name": "a"}, "endpoints": [ENDPOINT]}]),
        "spec.members[0]",
        "exactly one",
    ),
    "gossip-interval-bound": (federation(gossip={"intervalMs": 10}), "spec.gossip.intervalMs", ""),
    "endpoint-port-bound": (
        federation(members=[{"name": "a", "endpoints": [{"host": "h", "port": 70000}]}]),
        "spec.members[0].endpoints[0].port",
        "",
    ),
    "version-semver": (cluster(version="latest"), "spec.version", ""),
    "cert-manager-needs-issuer": (cluster(tls={"mode": "cert-manager"}), "spec.tls.issuerRef", ""),
    "conflict-strategy-enum": (
        federation(conflictPolicies={"default": "random"}),
        "spec.conflictPolicies.default",
        "",
    ),
}


def test_crds_installed_with_category_and_short_names(kubectl: Kubectl) -> None:
    names = {c["metadata"]["name"] for c in kubectl.json("get", "crd")["items"]}
    assert {
        "novacronclusters.novacron.io",
        "novacronregions.novacron.io",
        "dwcpfederations.novacron.io",
    } <= names
    for query in ("novacron", "ncr,fed,ncc"):  # discovery catches up shortly after Established
        wait_for(
            f"kubectl get {query}",
            lambda q=query: kubectl.run("get", q, "-A", check=False).returncode == 0,
            30,
        )


@pytest.mark.parametrize("case", list(INVALID), ids=list(INVALID))
def test_invalid_resource_rejected_naming_field(kubectl: Kubectl, case: str) -> None:
    obj, field_path, hint = INVALID[case]
    out = kubectl.run(
        "create", "--dry-run=server", "-n", "default", "-f", "-", stdin=json.dumps(obj), check=False
    )
    assert out.returncode != 0, f"{case} was accepted"
    assert field_path in out.stderr, out.stderr
    assert hint in out.stderr, out.stderr


def test_region_name_is_immutable(kubectl: Kubectl) -> None:
    obj = region()
    obj["metadata"]["name"] = f"immutable-{int(time.time())}"
    kubectl.apply(obj, "default")
    try:
        out = kubectl.run(
            "patch",
            "ncr",
            obj["metadata"]["name"],
            "-n",
            "default",
            "--type=merge",
            "-p",
            '{"spec":{"regionName":"r2"}}',
            check=False,
        )
        assert out.returncode != 0
        assert "spec.regionName" in out.stderr
        assert "immutable" in out.stderr
    finally:
        kubectl.run("delete", "ncr", obj["metadata"]["name"], "-n", "default", check=False)


def ready(k: Kubectl, kind: str, name: str, ns: str) -> bool:
    obj = k.get(kind, name, ns)
    conds = ((obj or {}).get("status") or {}).get("conditions") or []
    gen = (obj or {}).get("metadata", {}).get("generation")
    return (
        any(c["type"] == "Ready" and c["status"] == "True" for c in conds)
        and (obj or {}).get("status", {}).get("observedGeneration") == gen
    )


def all_ready(dep: Deployment) -> bool:
    return (
        all(ready(dep.k, "ncr", r, dep.ns) for r in REGIONS)
        and ready(dep.k, "fed", "global", dep.ns)
        and ready(dep.k, "ncc", "fleet", dep.ns)
    )


def pods(dep: Deployment, ns: str, selector: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = dep.k.json("get", "pods", "-n", ns, "-l", selector)["items"]
    return items


def running(p: dict[str, Any]) -> bool:
    conds = p.get("status", {}).get("conditions") or []
    return p.get("status", {}).get("phase") == "Running" and any(
        c["type"] == "Ready" and c["status"] == "True" for c in conds
    )


@pytest.fixture(scope="module")
def example(deployment: Deployment) -> Deployment:
    start = time.monotonic()
    deployment.k.apply(EXAMPLE, deployment.ns)
    wait_for("3-region example Ready", lambda: all_ready(deployment), 120)
    print(f"\n3-region example Ready in {time.monotonic() - start:.1f}s")
    return deployment


def test_three_region_example_ready_with_all_children_and_pods_running(example: Deployment) -> None:
    k, ns = example.k, example.ns
    for r in REGIONS:
        for kind, name in [
            ("configmap", f"{r}-config"),
            ("service", f"{r}-peers"),
            ("service", r),
            ("statefulset", r),
            ("pdb", r),
            ("networkpolicy", f"{r}-node"),
            ("serviceaccount", f"{r}-node"),
        ]:
            assert k.get(kind, name, ns) is not None, f"{kind}/{name} missing"
        # novacron agent / gateway do not exist yet: nothing runs them
        assert k.get("daemonset", f"{ns}-{r}-agent", example.agent_ns) is None
        assert k.get("deployment", f"{r}-gateway", ns) is None
        nodes = pods(
            example, ns, f"app.kubernetes.io/instance={r},app.kubernetes.io/component=node"
        )
        assert len(nodes) == 3
        assert all(running(p) for p in nodes)
        zones = {p["spec"]["nodeName"].rsplit("-", 1)[1] for p in nodes}
        assert zones == {"a", "b"}, "topology spread should use both zones"
    assert k.get("secret", "fleet-ca", ns) is not None
    topo = json.loads(k.get("configmap", "global-topology", ns)["data"]["topology.json"])
    assert [m["name"] for m in topo["members"]] == REGIONS
    status = k.get("ncr", "us-east", ns)["status"]
    assert status["readyReplicas"] == 3
    assert {c["type"] for c in status["conditions"]} == {
        "Ready", "Progressing", "Degraded", "VolumesResized", "ProtocolSupported",
    }  # fmt: skip
    assert status["protocol"] == "raft"
    events = k.json("get", "events", "-n", ns, "--field-selector", "reason=NodesReady")["items"]
    assert {e["involvedObject"]["name"] for e in events} >= set(REGIONS)


def test_namespaces_enforce_pod_security_and_node_pods_are_restricted(
    example: Deployment,
) -> None:
    labels = example.k.json("get", "namespace", example.ns)["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    # the API server admitted these under 'restricted': the node pods comply
    live = pods(example, example.ns, "app.kubernetes.io/name=novacron")
    components = {p["metadata"]["labels"]["app.kubernetes.io/component"] for p in live}
    assert components == {"node"}
    # and the same namespace refuses the agent (once deployed), which is why agents live apart
    spec = NovaCronRegionSpec.model_validate(EXAMPLE[1]["spec"])
    cspec = NovaCronClusterSpec.model_validate(EXAMPLE[0]["spec"])
    ds = agent(
        Owner("NovaCronRegion", "x", example.ns, "u"),
        spec,
        RegionContext(cspec, "fleet"),
        "digest",
        {"data": {}},
    )[2]
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "psa-agent", "namespace": example.ns},
        "spec": {**ds["spec"]["template"]["spec"], "serviceAccountName": "default"},
    }
    out = example.k.run("create", "--dry-run=server", "-f", "-", stdin=json.dumps(pod), check=False)
    assert out.returncode != 0
    assert "hostNetwork" in out.stderr
    assert "NET_ADMIN" in out.stderr


def test_hand_deleted_children_are_restored(example: Deployment) -> None:
    k, ns = example.k, example.ns
    before = {
        n: k.get(kind, n, ns)["metadata"]["uid"]
        for kind, n in [("configmap", "eu-west-config"), ("service", "eu-west")]
    }
    k.run("delete", "configmap", "eu-west-config", "-n", ns)
    k.run("delete", "service", "eu-west", "-n", ns)
    for kind, name in [("configmap", "eu-west-config"), ("service", "eu-west")]:
        obj = wait_for(
            f"{kind}/{name} restored", lambda kind=kind, name=name: k.get(kind, name, ns), 30
        )
        assert obj["metadata"]["uid"] != before[name]


def test_hand_edited_child_is_reverted(example: Deployment) -> None:
    k, ns = example.k, example.ns
    k.run("patch", "pdb", "eu-west", "-n", ns, "--type=merge", "-p", '{"spec":{"minAvailable":1}}')
    wait_for(
        "PDB reverted to quorum",
        lambda: k.get("pdb", "eu-west", ns)["spec"]["minAvailable"] == 2,
        30,
    )


def node_pods(dep: Deployment, r: str) -> list[dict[str, Any]]:
    return pods(dep, dep.ns, f"app.kubernetes.io/instance={r},app.kubernetes.io/component=node")


def rolled(dep: Deployment, r: str, replicas: int, image: str | None = None) -> bool:
    sts = dep.k.get("statefulset", r, dep.ns)
    rev = sts["status"].get("updateRevision")
    ps = node_pods(dep, r)
    return (
        len(ps) == replicas
        and all(running(p) for p in ps)
        and all(p["metadata"]["labels"].get("controller-revision-hash") == rev for p in ps)
        and (image is None or all(p["spec"]["containers"][0]["image"] == image for p in ps))
        and ready(dep.k, "ncr", r, dep.ns)
    )


def test_scale_3_to_5_then_image_change_rolls_one_pod_at_a_time(example: Deployment) -> None:
    k, ns = example.k, example.ns
    k.run("patch", "ncr", "us-east", "-n", ns, "--type=merge", "-p", '{"spec":{"replicas":5}}')
    wait_for("us-east at 5 ready nodes on one revision", lambda: rolled(example, "us-east", 5), 120)
    assert k.get("pdb", "us-east", ns)["spec"]["minAvailable"] == 3
    # the bootstrap members stay the nodes' config: scaling rewrote nothing, rolled nothing
    peers = json.loads(k.get("configmap", "us-east-config", ns)["data"]["node.json"])["peers"]
    assert len(peers.split(",")) == 3
    image = "registry.example.com/novacron:0.2.0"
    k.run(
        "patch",
        "ncr",
        "us-east",
        "-n",
        ns,
        "--type=merge",
        "-p",
        json.dumps({"spec": {"image": image}}),
    )
    worst = 0
    deadline = time.monotonic() + 150
    while not rolled(example, "us-east", 5, image):
        assert time.monotonic() < deadline, "image rollout did not finish"
        down = sum(1 for p in node_pods(example, "us-east") if not running(p))
        worst = max(worst, down + 5 - len(node_pods(example, "us-east")))
        time.sleep(0.2)
    assert worst <= 1, f"{worst} node pods were down at once; the partition goes one by one"
    rolls = k.json("get", "events", "-n", ns, "--field-selector", "reason=RollingPod")["items"]
    assert sum(1 for e in rolls if "us-east" in e["message"]) >= 5


def test_only_one_of_two_operator_replicas_acts_and_standby_takes_over(example: Deployment) -> None:
    first = example.operators[0]
    standby = example.new_operator("op-b")
    time.sleep(3)
    k, ns = example.k, example.ns
    k.run("delete", "service", "ap-south-peers", "-n", ns)
    wait_for("peers Service restored", lambda: k.get("service", "ap-south-peers", ns), 30)
    assert standby.reconciles() == 0, "standby reconciled while the leader held the Lease"
    assert (standby.metrics() or {})["novacron_operator_leader"] == 0
    first.stop(signal.SIGKILL)  # no graceful release: the standby must wait out the Lease
    wait_for(
        "standby elected",
        lambda: (standby.metrics() or {}).get("novacron_operator_leader") == 1,
        30,
    )
    k.run("delete", "configmap", "ap-south-config", "-n", ns)
    wait_for("restored by the new leader", lambda: k.get("configmap", "ap-south-config", ns), 30)
    lease = k.get("lease", "novacron-operator", ns)
    assert lease["spec"]["holderIdentity"] == "op-b"


def test_operator_token_cannot_act_outside_its_role(example: Deployment) -> None:
    k = example.k
    for args in (
        ["get", "secrets", "-n", "kube-system"],
        ["get", "nodes"],
        ["delete", "namespace", example.agent_ns, "--dry-run=server"],
    ):
        out = k.run(*args, check=False, kubeconfig=example.token_kc)
        assert out.returncode != 0
        assert "forbidden" in out.stderr.lower(), out.stderr
    ok = k.run("get", "statefulsets", "-n", example.ns, kubeconfig=example.token_kc, check=False)
    assert ok.returncode == 0, ok.stderr


def owned(k: Kubectl, uid: str, *namespaces: str) -> list[str]:
    found: list[str] = []
    for ns in namespaces:
        out = k.json("get", OWNED_KINDS, "-n", ns, "-l", f"novacron.io/owner={uid}")
        found += [f"{o['kind']}/{o['metadata']['name']}" for o in out["items"]]
        out = k.json("get", "pods", "-n", ns, "-l", "app.kubernetes.io/instance=ap-south")
        found += [f"{o['kind']}/{o['metadata']['name']}" for o in out["items"]]
    return found


def test_deleting_a_region_leaves_no_orphans(example: Deployment) -> None:
    k, ns = example.k, example.ns
    uid = k.get("ncr", "ap-south", ns)["metadata"]["uid"]
    assert owned(k, uid, ns, example.agent_ns)
    k.run("delete", "ncr", "ap-south", "-n", ns, "--timeout=60s")
    wait_for("no ap-south objects left", lambda: not owned(k, uid, ns, example.agent_ns), 90)
    # but its claims, holding the Raft logs: storage.whenDeleted is Retain by default
    sel = "app.kubernetes.io/instance=ap-south"
    assert len(k.json("get", "pvc", "-n", ns, "-l", sel)["items"]) == 3
    k.run("delete", "pvc", "-n", ns, "-l", sel)
    wait_for("federation notices", lambda: not ready(k, "fed", "global", ns), 30)
