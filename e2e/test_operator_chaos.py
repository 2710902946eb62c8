"""Crash the operator 20 times (SIGKILL at random moments and named failpoints) while the
spec keeps changing; a final clean run must converge with no duplicate or orphaned object."""

from __future__ import annotations

import random
import signal
import time
from typing import Any

import pytest
from conftest import Deployment, wait_for
from novacron_operator.builders import Owner, build_federation, build_region
from novacron_operator.builders.region import RegionContext
from novacron_operator.models import DWCPFederationSpec, NovaCronClusterSpec, NovaCronRegionSpec

pytestmark = pytest.mark.e2e
FAILPOINTS = ["mid-apply", "after-apply", "after-prune-delete", "after-release", "before-status"]
KINDS = "configmaps,services,serviceaccounts,statefulsets,daemonsets,deployments,"
KINDS += "poddisruptionbudgets,horizontalpodautoscalers,networkpolicies"

CLUSTER = {
    "apiVersion": "novacron.io/v1alpha1",
    "kind": "NovaCronCluster",
    "metadata": {"name": "fleet"},
    "spec": {"version": "0.1.0"},
}
FEDERATION = {
    "apiVersion": "novacron.io/v1alpha1",
    "kind": "DWCPFederation",
    "metadata": {"name": "global"},
    "spec": {
        "clusterRef": {"name": "fleet"},
        "members": [{"name": "eu-west", "regionRef": {"name": "eu-west"}}],
    },
}


IMAGES = ["ghcr.io/novacron/novacron:0.1.0", "ghcr.io/novacron/novacron:0.1.1"]


def region_obj(replicas: int, retain: bool, image: str = IMAGES[0]) -> dict[str, Any]:
    return {
        "apiVersion": "novacron.io/v1alpha1",
        "kind": "NovaCronRegion",
        "metadata": {"name": "eu-west"},
        "spec": {
            "clusterRef": {"name": "fleet"},
            "regionName": "eu-west",
            "zones": ["eu-west-a", "eu-west-b"],
            "replicas": replicas,
            "storage": {"whenDeleted": "Retain" if retain else "Delete"},
            "image": image,
        },
    }


def test_sigkill_and_failpoints_20_times_then_converges_without_orphans(
    deployment: Deployment,
) -> None:
    dep, k, ns = deployment, deployment.k, deployment.ns
    dep.operators[0].stop(signal.SIGKILL)
    rng = random.Random(int(time.time()))
    seed_note = []
    replicas, retain, image = 3, True, IMAGES[0]
    k.apply([CLUSTER, region_obj(replicas, retain), FEDERATION], ns)
    for i in range(20):
        failpoint = FAILPOINTS[i % len(FAILPOINTS)] if i % 2 else None
        # same identity as a restarted pod would have: it takes its own Lease back at once
        op = dep.new_operator("chaos", {"NOVACRON_FAILPOINT": failpoint} if failpoint else None)
        replicas, retain = rng.choice([(1, True), (3, True), (5, False), (3, False)])
        image = rng.choice(IMAGES)  # a new image rolls the pods: the partition moves
        k.apply(region_obj(replicas, retain, image), ns)
        seed_note.append(f"image={image}")
        if rng.random() < 0.5:
            k.run("delete", "configmap", "eu-west-config", "-n", ns, "--wait=false", check=False)
        delay = rng.uniform(0.0, 2.0)
        seed_note.append(f"{i}:{failpoint or 'kill'}@{delay:.2f}s r={replicas} retain={retain}")
        time.sleep(delay)
        op.stop(signal.SIGKILL)  # no-op if a failpoint already crashed it
        dep.operators.remove(op)
    final = dep.new_operator("chaos")
    wait_for("region Ready after chaos", lambda: ready_with(k, ns, replicas), 120)
    wait_for("federation Ready", lambda: cond(k.get("fed", "global", ns), "Ready"), 30)
    assert final.reconciles() > 0

    region = k.get("ncr", "eu-west", ns)
    uid = region["metadata"]["uid"]
    spec = NovaCronRegionSpec.model_validate(region["spec"])
    ctx = RegionContext(
        NovaCronClusterSpec.model_validate(CLUSTER["spec"]), "fleet", agent_namespace=dep.agent_ns
    )
    desired = build_region(Owner("NovaCronRegion", "eu-west", ns, uid), spec, ctx)
    want = {(o["metadata"]["namespace"], o["kind"], o["metadata"]["name"]) for o in desired}
    have = set()
    for n in (ns, dep.agent_ns):
        for o in k.json("get", KINDS, "-n", n, "-l", f"novacron.io/owner={uid}")["items"]:
            have.add((n, o["kind"], o["metadata"]["name"]))
    assert have == want, f"extra={have - want} missing={want - have} history={seed_note}"
    fed = k.get("fed", "global", ns)
    fed_uid = fed["metadata"]["uid"]
    fed_want = build_federation(
        Owner("DWCPFederation", "global", ns, fed_uid),
        DWCPFederationSpec.model_validate(fed["spec"]),
    )
    fed_have = k.json("get", KINDS, "-n", ns, "-l", f"novacron.io/owner={fed_uid}")["items"]
    assert sorted(o["metadata"]["name"] for o in fed_have) == sorted(
        o["metadata"]["name"] for o in fed_want
    )
    node_pods = k.json(
        "get",
        "pods",
        "-n",
        ns,
        "-l",
        "app.kubernetes.io/instance=eu-west,app.kubernetes.io/component=node",
    )
    assert len(node_pods["items"]) == replicas
    # the last image change rolled every pod through the partition, none left behind
    assert {p["spec"]["containers"][0]["image"] for p in node_pods["items"]} == {image}
    # nothing labelled as ours points at an owner that no longer exists
    uids = {uid, fed_uid, k.get("ncc", "fleet", ns)["metadata"]["uid"]}
    for n in (ns, dep.agent_ns):
        for o in k.json("get", KINDS + ",secrets", "-n", n, "-l", "novacron.io/owner")["items"]:
            assert o["metadata"]["labels"]["novacron.io/owner"] in uids, o["metadata"]["name"]


def cond(obj: dict[str, Any] | None, type_: str) -> bool:
    for c in ((obj or {}).get("status") or {}).get("conditions") or []:
        if c["type"] == type_:
            return bool(c["status"] == "True")
    return False


def ready_with(k: Any, ns: str, replicas: int) -> bool:
    r = k.get("ncr", "eu-west", ns)
    return bool(
        cond(r, "Ready")
        and r["status"].get("observedGeneration") == r["metadata"]["generation"]
        and r["status"].get("readyReplicas") == replicas
    )
