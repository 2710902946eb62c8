"""The day-2 side of a region's pass: the members its group was created with, whether it has
formed, and the one membership action (learner, promote, remove, leadership transfer) the
sequencer decided, performed on the leader through the nodes' admin API."""

from __future__ import annotations

import logging
from typing import Any, Literal

import aiohttp

from novacron_operator import API_VERSION, names
from novacron_operator.admin import ClusterInfo
from novacron_operator.builders import Owner
from novacron_operator.builders.region import (
    BOOTSTRAP_ANNOTATION,
    FORMED_ANNOTATION,
    TEMPLATE_HASH,
)
from novacron_operator.failpoints import failpoint
from novacron_operator.kube import Kube
from novacron_operator.reconcile import Options, annotate
from novacron_operator.sequencer import Pod, Step, World

Obj = dict[str, Any]
log = logging.getLogger("novacron.operator")


def _recorded(obj: Obj | None) -> int | None:
    value = (((obj or {}).get("metadata") or {}).get("annotations") or {}).get(
        BOOTSTRAP_ANNOTATION, ""
    )
    return int(value) if value.isdigit() and int(value) > 0 else None


def bootstrap_replicas(body: Obj, replicas: int, sts: Obj | None) -> tuple[int, bool]:
    """The members the group was created with: recorded on the region and its StatefulSet
    (either one is enough: should a crash or a replace lose the region's annotation, the
    StatefulSet's is read) by the first pass, which creates the group with spec.replicas;
    the nodes' bootstrap ``peers`` never change when the region scales. Returns the count
    and whether the region still needs it recorded (``record_bootstrap``, sent beside the
    children's applies)."""
    recorded = _recorded(body)
    if recorded is not None:
        return recorded, False
    return _recorded(sts) or replicas, True


def cluster_state(body: Obj, step: Step) -> tuple[Literal["new", "existing"], bool]:
    """``existing`` once the group has formed: recorded on the region, or seen right now (a
    leader answered). Before that, pods bootstrap the group ("new"); after it, a bootstrap
    pod starting on an empty volume waits to be replaced (it reports ``rejoining`` and the
    sequencer removes and re-adds it). Returns the state and whether to record it."""
    annotations = (body.get("metadata") or {}).get("annotations") or {}
    if annotations.get(FORMED_ANNOTATION) == "true":
        return "existing", False
    if step.leader is not None or step.leaderless:  # a leaderless group answered whole
        return "existing", True
    return "new", False


async def record_formed(kube: Kube, body: Obj) -> None:
    await annotate(kube, body, {FORMED_ANNOTATION: "true"})


async def record_bootstrap(kube: Kube, body: Obj, count: int) -> None:
    await annotate(kube, body, {BOOTSTRAP_ANNOTATION: str(count)})


def ordinal_of(pod: Obj) -> int:
    return int(pod["metadata"]["name"].rsplit("-", 1)[1])


def world_of(
    owner: Owner,
    desired: int,
    sts: Obj | None,
    template_hash: str,
    pods: list[Obj],
    nodes: dict[str, ClusterInfo],
    manage: bool,
) -> World:
    if sts is None:
        return World(owner.name, desired, None, manage=manage)
    st = sts.get("status") or {}
    revision = st.get("updateRevision")
    rolling = (sts["spec"].get("updateStrategy") or {}).get("rollingUpdate") or {}
    return World(
        name=owner.name,
        desired=desired,
        sts_replicas=int(sts["spec"].get("replicas", 1)),
        partition=int(rolling.get("partition", 0)),
        template_current=(sts["metadata"].get("annotations") or {}).get(TEMPLATE_HASH)
        == template_hash,
        observed=st.get("observedGeneration", 0) >= sts["metadata"].get("generation", 0)
        and bool(revision),
        pods={
            ordinal_of(p): Pod(
                ordinal_of(p),
                pod_ready(p),
                (p["metadata"].get("labels") or {}).get("controller-revision-hash") == revision,
            )
            for p in pods
            if not p["metadata"].get("deletionTimestamp")
        },
        nodes=nodes,
        manage=manage,
    )


EVENT_OF = {
    "add_learner": "MemberAdded",
    "promote": "MemberPromoted",
    "remove": "MemberRemoved",
    "transfer": "LeaderTransfer",
}


async def execute(kube: Kube, owner: Owner, opts: Options, step: Step) -> bool:
    """Perform the step's one membership action on the leader; False when the group
    refused or could not be reached (the next pass looks again)."""
    action, leader = step.action, step.leader
    if action is None or leader is None:
        return True
    service = names.peers_service(owner.name)
    resolver = opts.nodes.resolver
    at = resolver.address(owner.namespace, service, leader.node)
    if at is None:
        return False
    admin = opts.nodes.admin(at)
    try:
        if action.kind == "add_learner":
            target = resolver.address(owner.namespace, service, action.node)
            if target is None:
                return False
            await admin.add_learner(action.node, target)
        elif action.kind == "promote":
            await admin.promote(action.node)
        elif action.kind == "remove":
            await admin.remove(action.node)
        else:
            await admin.transfer_leader(action.node)
    except (aiohttp.ClientError, TimeoutError) as e:
        log.info("%s/%s: %s deferred: %s", owner.namespace, owner.name, action, e)
        return False
    log.info("%s/%s: %s (leader %s)", owner.namespace, owner.name, action, leader.node)
    detail = f"{action.kind} {action.node} on leader {leader.node}"
    await kube.event(region_ref(owner), "Normal", EVENT_OF[action.kind], detail)
    # the crash points etcd-operator's tests use: each sits between two halves of a change
    if action.kind == "add_learner":
        failpoint("member-add")  # a learner, not yet promoted
    elif action.kind == "remove":
        failpoint("member-remove")  # removed from the group, its pod still there
    elif action.kind == "transfer":
        failpoint("leadership-transfer")  # transfer requested, the pod not yet released
    return True


def region_ref(owner: Owner) -> Obj:
    return {"apiVersion": API_VERSION, "kind": owner.kind, "metadata": _meta(owner)}


def pod_ready(pod: Obj) -> bool:
    if pod["metadata"].get("deletionTimestamp"):
        return False
    conds = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conds)


def _meta(owner: Owner) -> Obj:
    return {"name": owner.name, "namespace": owner.namespace, "uid": owner.uid}
