"""What a new user hits first (issue 13, the operator's part), on a real API server with
kwok's nodes: names the operator cannot use, volume resize and retention, a child the API
server refuses, honest status and events, regionDefaults, duplicate region names, what a
federation says about its members, and a clean SIGTERM."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import Deployment, Kubectl, deployed, wait_for

pytestmark = pytest.mark.e2e
NODES = "app.kubernetes.io/component=node"


def cluster(name: str = "fleet", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "novacron.io/v1alpha1",
        "kind": "NovaCronCluster",
        "metadata": {"name": name},
        "spec": {"version": "0.1.0", **spec},
    }


def region(name: str, region_name: str, **spec: Any) -> dict[str, Any]:
    zones = [f"{region_name}-a", f"{region_name}-b"]
    return {
        "apiVersion": "novacron.io/v1alpha1",
        "kind": "NovaCronRegion",
        "metadata": {"name": name},
        "spec": {"clusterRef": {"name": "fleet"}, "regionName": region_name, "zones": zones} | spec,
    }


def federation(name: str, members: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "novacron.io/v1alpha1",
        "kind": "DWCPFederation",
        "metadata": {"name": name},
        "spec": {"clusterRef": {"name": "fleet"}, "members": members, **spec},
    }


def conds(obj: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in ((obj or {}).get("status") or {}).get("conditions") or []}


def observed(obj: dict[str, Any] | None) -> bool:
    st = (obj or {}).get("status") or {}
    return st.get("observedGeneration") == (obj or {}).get("metadata", {}).get("generation")


def condition(k: Kubectl, kind: str, name: str, ns: str, type_: str, status: str) -> Any:
    obj = k.get(kind, name, ns)
    c = conds(obj).get(type_)
    return c if c and c["status"] == status and observed(obj) else None


def warnings(k: Kubectl, ns: str, name: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = k.json(
        "get", "events", "-n", ns, "--field-selector", f"involvedObject.name={name},type=Warning"
    )["items"]
    return items


def claims(k: Kubectl, ns: str, name: str) -> list[dict[str, Any]]:
    sel = f"app.kubernetes.io/instance={name},{NODES}"
    items: list[dict[str, Any]] = k.json("get", "pvc", "-n", ns, "-l", sel)["items"]
    return items


def node_pods(k: Kubectl, ns: str, name: str) -> list[dict[str, Any]]:
    sel = f"app.kubernetes.io/instance={name},{NODES}"
    items: list[dict[str, Any]] = k.json("get", "pods", "-n", ns, "-l", sel)["items"]
    return items


def ready(k: Kubectl, kind: str, name: str, ns: str) -> bool:
    return condition(k, kind, name, ns, "Ready", "True") is not None


@pytest.fixture(scope="module")
def dep(kubectl: Kubectl) -> Iterator[Deployment]:
    with deployed(kubectl) as d:
        d.new_operator("first")
        d.k.apply(cluster(), d.ns)
        yield d


# --- names the operator could not turn into child names ----------------------------------

REFUSED_NAMES = {
    "dotted-region": (region("us.east", "us-east"), "metadata.name must match"),
    "long-region": (region("r" * 53, "us-east"), "at most 52 characters"),
    "digit-first-region": (region("1east", "us-east"), "metadata.name must match"),
    "dotted-cluster": (cluster("fleet.prod"), "metadata.name must match"),
    "dotted-federation": (
        federation("global.v1", [{"name": "a", "endpoints": [{"host": "h", "port": 7000}]}]),
        "metadata.name must match",
    ),
    "regionref-twice": (
        federation(
            "twice",
            [{"name": "a", "regionRef": {"name": "x"}}, {"name": "b", "regionRef": {"name": "x"}}],
        ),
        "a regionRef may appear in only one member",
    ),
    "agent-endpoints-on-a-local-member": (
        federation(
            "local-agents",
            [
                {
                    "name": "a",
                    "regionRef": {"name": "x"},
                    "agentEndpoints": [{"host": "10.0.0.1", "port": 7946}],
                }
            ],
        ),
        "agentEndpoints is for remote members",
    ),
    "overlay-cidr-not-a-network": (
        federation(
            "bad-overlay",
            [{"name": "a", "endpoints": [{"host": "h", "port": 7000}]}],
            tunnels={"kind": "vxlan", "overlayCidr": "198.19.0.0/31"},
        ),
        "spec.tunnels.overlayCidr",
    ),
}


@pytest.mark.parametrize("case", list(REFUSED_NAMES), ids=list(REFUSED_NAMES))
def test_the_api_server_refuses_what_the_operator_cannot_reconcile(
    kubectl: Kubectl, case: str
) -> None:
    obj, message = REFUSED_NAMES[case]
    out = kubectl.run(
        "create", "--dry-run=server", "-n", "default", "-f", "-", stdin=json.dumps(obj), check=False
    )
    assert out.returncode != 0, f"{case} was accepted"
    assert message in out.stderr, out.stderr


# --- a child the API server refuses: a condition, a Warning, backoff ---------------------


def test_a_refused_child_is_reported_and_retried_with_backoff(dep: Deployment) -> None:
    k, ns = dep.k, dep.ns
    # a node label key Kubernetes does not accept: the StatefulSet apply gets a 422
    k.apply(region("refused", "eu-west", scheduling={"nodeSelector": {"bad key!": "x"}}), ns)
    try:  # (a region left failing would slow every later test's reconciles)
        c = wait_for(
            "Degraded=True ChildApplyFailed",
            lambda: condition(k, "ncr", "refused", ns, "Degraded", "True"),
            30,
        )
        assert c["reason"] == "ChildApplyFailed"
        assert "StatefulSet refused" in c["message"]
        assert "bad key!" in c["message"]
        assert conds(k.get("ncr", "refused", ns))["Ready"]["status"] == "False"
        wait_for("a Warning event", lambda: warnings(k, ns, "refused"), 15)
        op = dep.operators[0]

        def errors() -> float:
            m = op.metrics() or {}
            return sum(
                v
                for key, v in m.items()
                if "reconciles_total" in key and 'result="error"' in key and "NovaCronRegion" in key
            )

        before = errors()
        time.sleep(12)
        # backoff 1, 2, 4, 8 s, the 10 s resync, and a pass when a federation or cluster this
        # region follows changes: a handful; a hot loop would be 12 or more (one a second)
        assert errors() - before <= 7
        assert len(warnings(k, ns, "refused")) <= 3  # posted on the transition, not every pass
    finally:
        k.run("delete", "ncr", "refused", "-n", ns)


# --- honest status -----------------------------------------------------------------------


def node_json(k: Kubectl, name: str, ns: str) -> dict[str, Any]:
    cm = k.get("configmap", f"{name}-config", ns) or {}
    return dict(json.loads((cm.get("data") or {}).get("node.json") or "{}"))


def test_a_region_runs_the_protocol_it_asks_for_and_keeps_it(dep: Deployment) -> None:
    k, ns = dep.k, dep.ns
    k.apply(region("paxos", "ap-south", protocol="epaxos", replicas=1), ns)
    c = wait_for(
        "ProtocolSupported=True",
        lambda: condition(k, "ncr", "paxos", ns, "ProtocolSupported", "True"),
        30,
    )
    assert c["reason"] == "EPaxos"
    assert node_json(k, "paxos", ns)["protocol"] == "epaxos"  # what `novacron node` loads
    obj = k.get("ncr", "paxos", ns) or {}
    assert obj["status"]["protocol"] == "epaxos"
    assert obj["metadata"]["annotations"]["novacron.io/bootstrap-protocol"] == "epaxos"
    sts = k.get("statefulset", "paxos", ns) or {}
    assert sts["metadata"]["annotations"]["novacron.io/bootstrap-protocol"] == "epaxos"
    wait_for("Ready", lambda: ready(k, "ncr", "paxos", ns), 60)
    # the API server refuses an edit, saying why; and adaptive, which needs the same switch
    for value, message in (
        ("multi-paxos", "protocol is fixed once the region exists"),
        ("adaptive", "adaptive is not available yet"),
    ):
        out = k.run(
            "patch", "ncr", "paxos", "-n", ns, "--type=merge",
            "-p", json.dumps({"spec": {"protocol": value}}), check=False,
        )  # fmt: skip
        assert out.returncode != 0, f"protocol {value} was accepted"
        assert message in out.stderr, out.stderr
    out = k.run(
        "create", "--dry-run=server", "-n", ns, "-f", "-",
        stdin=json.dumps(region("adapt", "ap-east", protocol="adaptive")), check=False,
    )  # fmt: skip
    assert out.returncode != 0, "protocol adaptive was accepted"
    assert "live switch" in out.stderr, out.stderr
    k.run("delete", "ncr", "paxos", "-n", ns)


def test_a_changed_default_protocol_does_not_reach_a_running_group(dep: Deployment) -> None:
    """A region that inherits regionDefaults.protocol keeps the protocol it was created
    with when the default changes: its pods are not restarted on another protocol, and the
    region says why it does not run what its spec now means."""
    k, ns = dep.k, dep.ns
    k.apply(cluster("multi", regionDefaults={"replicas": 1, "protocol": "raft"}), ns)
    r = region("inherits", "eu-west")
    r["spec"]["clusterRef"] = {"name": "multi"}
    k.apply(r, ns)
    wait_for("Ready", lambda: ready(k, "ncr", "inherits", ns), 60)
    assert node_json(k, "inherits", ns)["protocol"] == "raft"
    template = (k.get("statefulset", "inherits", ns) or {})["spec"]["template"]
    k.run(
        "patch", "ncc", "multi", "-n", ns, "--type=merge",
        "-p", '{"spec":{"regionDefaults":{"protocol":"multi-paxos"}}}',
    )  # fmt: skip
    c = wait_for(
        "ProtocolSupported=False",
        lambda: condition(k, "ncr", "inherits", ns, "ProtocolSupported", "False"),
        30,
    )
    assert c["reason"] == "SwitchNotAvailable"
    assert "spec.protocol multi-paxos" in c["message"]
    assert "keep running raft" in c["message"]
    obj = k.get("ncr", "inherits", ns) or {}
    assert obj["status"]["protocol"] == "raft"  # what runs
    assert node_json(k, "inherits", ns)["protocol"] == "raft"
    assert (k.get("statefulset", "inherits", ns) or {})["spec"]["template"] == template
    assert "SwitchNotAvailable" in {e["reason"] for e in warnings(k, ns, "inherits")}
    # a new region of the cluster takes the new default
    r2 = region("newer", "ap-south")
    r2["spec"]["clusterRef"] = {"name": "multi"}
    k.apply(r2, ns)
    wait_for(
        "multi-paxos rendered", lambda: node_json(k, "newer", ns).get("protocol") == "multi-paxos"
    )
    k.run("delete", "ncr", "inherits", "newer", "-n", ns)
    k.run("delete", "ncc", "multi", "-n", ns)


# --- regionDefaults and duplicate region names -------------------------------------------


def test_region_defaults_fill_what_a_region_leaves_unset(dep: Deployment) -> None:
    k, ns = dep.k, dep.ns
    k.apply(cluster("small", regionDefaults={"replicas": 1, "storage": {"size": "2Gi"}}), ns)
    r = region("defaulted", "us-east")
    r["spec"]["clusterRef"] = {"name": "small"}
    k.apply(r, ns)

    def sts() -> dict[str, Any] | None:
        return k.get("statefulset", "defaulted", ns)

    s = wait_for("the StatefulSet", sts, 30)
    assert s["spec"]["replicas"] == 1
    claim = s["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"]
    assert claim == "2Gi"
    # a change of the defaults reaches the regions that take them
    k.run(
        "patch", "ncc", "small", "-n", ns, "--type=merge",
        "-p", '{"spec":{"regionDefaults":{"replicas":3}}}',
    )  # fmt: skip
    wait_for("3 replicas from the new default", lambda: (sts() or {})["spec"]["replicas"] == 3, 30)
    k.run("delete", "ncr", "defaulted", "-n", ns)
    k.run("delete", "ncc", "small", "-n", ns)


def test_a_second_region_with_the_same_region_name_is_refused(dep: Deployment) -> None:
    k, ns = dep.k, dep.ns
    k.apply(region("first-east", "us-east", replicas=1), ns)
    wait_for("the first Ready", lambda: ready(k, "ncr", "first-east", ns), 60)
    time.sleep(1.1)  # creationTimestamp has 1 s resolution
    k.apply(region("second-east", "us-east", replicas=1), ns)
    c = wait_for(
        "Degraded DuplicateRegionName",
        lambda: condition(k, "ncr", "second-east", ns, "Degraded", "True"),
        30,
    )
    assert c["reason"] == "DuplicateRegionName"
    assert "first-east" in c["message"]
    assert k.get("statefulset", "second-east", ns) is None  # nothing deployed for it
    assert ready(k, "ncr", "first-east", ns)
    k.run("delete", "ncr", "first-east", "second-east", "-n", ns)


# --- federation ----------------------------------------------------------------------------


def test_federation_reports_unknown_and_renamed_members_and_mounts_its_topology(
    dep: Deployment,
) -> None:
    k, ns = dep.k, dep.ns
    k.apply(region("west", "eu-west", replicas=1), ns)
    members = [
        {"name": "europe", "regionRef": {"name": "west"}},  # its nodes say eu-west
        {"name": "mars", "regionRef": {"name": "mars"}},
        {"name": "ap", "endpoints": [{"host": "ap.example.net", "port": 7000}]},
    ]
    k.apply(federation("fed", members), ns)
    c = wait_for(
        "Degraded RegionNotFound",
        lambda: condition(k, "fed", "fed", ns, "Degraded", "True"),
        30,
    )
    assert c["reason"] == "RegionNotFound"
    assert "NovaCronRegion mars does not exist" in c["message"]
    fed = k.get("fed", "fed", ns)
    by_name = {m["name"]: m for m in fed["status"]["members"]}
    assert "does not exist" in by_name["mars"]["message"]
    assert conds(fed)["MemberNamesMatch"]["status"] == "False"
    assert "eu-west" in conds(fed)["MemberNamesMatch"]["message"]
    # what the nodes apply (conflict policies, the topology file) and what they cannot yet
    assert conds(fed)["ConflictPoliciesSupported"]["reason"] == "AppliedByNodes"
    assert conds(fed)["TopologyConsumed"]["reason"] == "NodesReadFederationFile"
    assert conds(fed)["FailoverSupported"]["reason"] == "NotImplemented"
    topo = json.loads(k.get("configmap", "fed-topology", ns)["data"]["topology.json"])
    europe = next(m for m in topo["members"] if m["name"] == "europe")
    assert europe["region"] == "eu-west"
    assert europe["endpoints"] == [f"west-0.west-peers.{ns}.svc:7000"]

    def mounted() -> dict[str, Any] | None:
        s = k.get("statefulset", "west", ns)
        vols = (s or {}).get("spec", {}).get("template", {}).get("spec", {}).get("volumes", [])
        return (
            s if any(v.get("configMap", {}).get("name") == "fed-topology" for v in vols) else None
        )

    sts = wait_for("the member region mounts the topology", mounted, 30)
    cm = k.get("configmap", "west-config", ns)
    assert json.loads(cm["data"]["node.json"])["federation_file"] == (
        "/etc/novacron/federation/topology.json"
    )
    # a change of the federation is a file the kubelet updates: no pod template changes
    generation = sts["metadata"]["generation"]
    k.run("patch", "fed", "fed", "-n", ns, "--type=merge", "-p", '{"spec":{"gossip":{"fanout":5}}}')
    wait_for(
        "fanout 5 in topology.json",
        lambda: '"fanout": 5' in k.get("configmap", "fed-topology", ns)["data"]["topology.json"],
        30,
    )
    time.sleep(2)
    assert k.get("statefulset", "west", ns)["metadata"]["generation"] == generation
    k.run("delete", "fed", "fed", "-n", ns)
    wait_for("unmounted", lambda: mounted() is None, 30)
    lost = federation("lost", [{"name": "ap", "endpoints": [{"host": "h", "port": 7000}]}])
    lost["spec"]["clusterRef"] = {"name": "nowhere"}
    k.apply(lost, ns)
    c = wait_for(
        "Degraded ClusterNotFound",
        lambda: condition(k, "fed", "lost", ns, "Degraded", "True"),
        30,
    )
    assert (c["reason"], "NovaCronCluster nowhere does not exist" in c["message"]) == (
        "ClusterNotFound",
        True,
    )
    k.run("delete", "fed", "lost", "-n", ns)
    k.run("delete", "ncr", "west", "-n", ns)


# --- volumes: resize and retention -------------------------------------------------------


def test_volume_resize_refused_then_done_without_restarting_a_pod(
    dep: Deployment, kubectl: Kubectl
) -> None:
    k, ns = dep.k, dep.ns
    k.apply(region("vol", "us-east", replicas=3, storage={"size": "1Gi"}), ns)
    wait_for("Ready at 1Gi", lambda: ready(k, "ncr", "vol", ns), 60)
    wait_for("3 bound claims", lambda: len(claims(k, ns, "vol")) == 3, 30)
    pods_before = {p["metadata"]["name"]: p["metadata"]["uid"] for p in node_pods(k, ns, "vol")}
    sts_uid = k.get("statefulset", "vol", ns)["metadata"]["uid"]
    # kwok's StorageClass does not allow expansion: said so, nothing loops, the group serves
    k.run(
        "patch", "ncr", "vol", "-n", ns, "--type=merge", "-p", '{"spec":{"storage":{"size":"2Gi"}}}'
    )
    c = wait_for(
        "VolumesResized=False ExpansionRefused",
        lambda: condition(k, "ncr", "vol", ns, "VolumesResized", "False"),
        30,
    )
    assert c["reason"] == "ExpansionRefused"
    assert "allowVolumeExpansion" in c["message"]
    assert ready(k, "ncr", "vol", ns)
    assert "ExpansionRefused" in {e["reason"] for e in warnings(k, ns, "vol")}
    sts = k.get("statefulset", "vol", ns)
    assert sts["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"] == {
        "storage": "1Gi"
    }
    # now the class allows it: the claims grow, the StatefulSet is re-created, no pod restarts
    kubectl.run("patch", "storageclass", "kwok-volume", "-p", '{"allowVolumeExpansion": true}')
    try:
        wait_for(
            "VolumesResized=True",
            lambda: condition(k, "ncr", "vol", ns, "VolumesResized", "True"),
            60,
        )
        sizes = {c["spec"]["resources"]["requests"]["storage"] for c in claims(k, ns, "vol")}
        assert sizes == {"2Gi"}
        sts = k.get("statefulset", "vol", ns)
        assert sts["metadata"]["uid"] != sts_uid  # re-created
        requests = sts["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]
        assert requests == {"storage": "2Gi"}
        wait_for("Ready after the resize", lambda: ready(k, "ncr", "vol", ns), 60)
        after = {p["metadata"]["name"]: p["metadata"]["uid"] for p in node_pods(k, ns, "vol")}
        assert after == pods_before  # the same pods, adopted by the new StatefulSet
        # a claim cannot shrink: said so, the volumes stay
        k.run(
            "patch", "ncr", "vol", "-n", ns, "--type=merge",
            "-p", '{"spec":{"storage":{"size":"1Gi"}}}',
        )  # fmt: skip
        c = wait_for(
            "ShrinkUnsupported",
            lambda: condition(k, "ncr", "vol", ns, "VolumesResized", "False"),
            30,
        )
        assert c["reason"] == "ShrinkUnsupported"
    finally:
        kubectl.run("patch", "storageclass", "kwok-volume", "-p", '{"allowVolumeExpansion": false}')


def test_deleting_a_region_keeps_its_claims_unless_asked(dep: Deployment) -> None:
    k, ns = dep.k, dep.ns
    if k.get("ncr", "vol", ns) is None:
        k.apply(region("vol", "us-east", replicas=3, storage={"size": "1Gi"}), ns)
    wait_for("3 claims", lambda: len(claims(k, ns, "vol")) == 3, 60)
    k.run("delete", "ncr", "vol", "-n", ns, "--timeout=60s")
    wait_for("the StatefulSet gone", lambda: k.get("statefulset", "vol", ns) is None, 60)
    time.sleep(3)  # the garbage collector had its chance
    assert len(claims(k, ns, "vol")) == 3, "the Raft logs went with the region"
    k.run("delete", "pvc", "-n", ns, "-l", f"app.kubernetes.io/instance=vol,{NODES}")
    # asked for: whenDeleted Delete
    k.apply(region("gone", "eu-west", replicas=1, storage={"whenDeleted": "Delete"}), ns)
    # the StatefulSet controller marks the claim for deletion with its StatefulSet (an owner
    # reference) once it has synced them; a region deleted before that keeps it, erring on
    # the safe side
    wait_for(
        "the claim owned by its StatefulSet",
        lambda: [
            c
            for c in claims(k, ns, "gone")
            if any(r["kind"] == "StatefulSet" for r in c["metadata"].get("ownerReferences") or [])
        ],
        60,
    )
    k.run("delete", "ncr", "gone", "-n", ns, "--timeout=60s")
    wait_for("the claim deleted with the region", lambda: not claims(k, ns, "gone"), 60)


# --- shutdown ----------------------------------------------------------------------------


def test_sigterm_stops_within_the_grace_period_releases_the_lease_and_exits_0(
    dep: Deployment,
) -> None:
    k, ns = dep.k, dep.ns
    k.apply(region("busy", "ap-south", replicas=1), ns)
    wait_for("Ready", lambda: ready(k, "ncr", "busy", ns), 60)
    op = dep.operators[0]
    assert op.proc is not None
    wait_for("the lease held", lambda: (k.get("lease", "novacron-operator", ns) or {}).get(
        "spec", {}).get("holderIdentity") == op.identity, 30)  # fmt: skip
    start = time.monotonic()
    code = op.stop(signal.SIGTERM)
    took = time.monotonic() - start
    print(f"\noperator stopped {took:.2f}s after SIGTERM, exit code {code}")
    assert code == 0
    assert took < 10, f"took {took:.1f}s (grace period 30s, and a standby waits)"
    log = op.log()
    for bad in ("Traceback", "ExceptionGroup", "Unclosed", "Task was destroyed"):
        assert bad not in log, log[-3000:]
    assert '"msg": "stopped"' in log
    holder = (k.get("lease", "novacron-operator", ns) or {}).get("spec", {}).get("holderIdentity")
    assert not holder, f"the lease is still held by {holder}"
    dep.operators.remove(op)
    # no finalizer of the operator's (nor kopf's) holds a resource while none runs: a
    # delete or a GitOps prune after an uninstall does not hang
    assert not k.get("ncr", "busy", ns)["metadata"].get("finalizers")
    k.run("delete", "ncr", "busy", "-n", ns, "--timeout=30s")
