"""One level-based reconcile pass per resource: read the world, build, apply, prune, report.

Every pass starts from scratch (no memory of previous passes), so a crash at any point is
repaired by the next pass, and running a pass twice changes nothing.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import aiohttp
from pydantic import ValidationError

from novacron_operator import API_VERSION
from novacron_operator.admin import ClusterInfo, NodeClients
from novacron_operator.builders import Owner, build_ca_secret, build_cluster, build_federation
from novacron_operator.builders.cluster import ca_secret_name
from novacron_operator.builders.common import selector_labels
from novacron_operator.builders.region import (
    BOOTSTRAP_ANNOTATION,
    FORMED_ANNOTATION,
    TEMPLATE_HASH,
    RegionContext,
    agent_names,
    build_region,
)
from novacron_operator.failpoints import failpoint
from novacron_operator.kube import OPTIONAL_OWNED, OWNED, ApiError, Kube, path
from novacron_operator.models import DWCPFederationSpec, NovaCronClusterSpec, NovaCronRegionSpec
from novacron_operator.sequencer import Pod, Step, World, plan
from novacron_operator.status import (
    Group,
    Health,
    conditions,
    now_rfc3339,
    ready_of,
    workload_health,
)

Obj = dict[str, Any]
log = logging.getLogger("novacron.operator")


@dataclass(frozen=True, order=True)
class Key:
    kind: str
    namespace: str
    name: str


@dataclass(frozen=True)
class Later:
    """Reconcile ``key`` again after ``seconds`` (a sequence in progress polls the nodes)."""

    key: Key
    seconds: float


Follow = list[Key | Later]


@dataclass(frozen=True)
class Options:
    agent_namespace: str | None = None
    # order membership changes through the nodes' admin API (learner/promote/remove/
    # transfer); False scales and rolls pods alone, for pods that run no node (kwok)
    manage_members: bool = True
    nodes: NodeClients = field(default_factory=NodeClients)


AGENT_FINALIZER = "novacron.io/agents"
AGENT_KINDS = ("DaemonSet", "ConfigMap", "ServiceAccount")


async def cleanup_agents(kube: Kube, owner: Owner, ns: str, keep: set[tuple[str, str]]) -> None:
    """Prune agent objects in the agent namespace (no owner references can reach there)."""
    for kind in AGENT_KINDS:
        for existing in await kube.owned(kind, ns, owner.uid):
            if (kind, existing["metadata"]["name"]) not in keep:
                await kube.delete(kind, ns, existing["metadata"]["name"])


async def set_finalizer(kube: Kube, body: Obj, present: bool) -> None:
    if (AGENT_FINALIZER in (body["metadata"].get("finalizers") or [])) == present:
        return
    # the list is replaced whole, guarded by resourceVersion: take both from the server,
    # not from the informer's copy, which may lag
    fresh = await kube.get(body["kind"], body["metadata"]["namespace"], body["metadata"]["name"])
    if fresh is None:
        return
    meta = fresh["metadata"]
    current = list(meta.get("finalizers") or [])
    if (AGENT_FINALIZER in current) == present:
        return
    wanted = (
        [*current, AGENT_FINALIZER] if present else [f for f in current if f != AGENT_FINALIZER]
    )
    patch = {"metadata": {"finalizers": wanted, "resourceVersion": meta["resourceVersion"]}}
    await kube.write(
        "PATCH",
        path(body["kind"], meta["namespace"], meta["name"]),
        patch,
        "application/merge-patch+json",
    )


async def apply_and_prune(
    kube: Kube, owner: Owner, desired: list[Obj], keep: frozenset[tuple[str, str]] = frozenset()
) -> None:
    # independent objects: apply them all at once (one pass is latency-bound, not
    # CPU-bound); an object whose informer copy is what we last applied costs no request
    half, done = len(desired) // 2, 0

    async def one(obj: Obj) -> None:
        nonlocal done
        await kube.apply_if_changed(obj)
        done += 1
        if done == half:
            failpoint("mid-apply")  # some children applied, the others not (or in flight)

    await asyncio.gather(*(one(o) for o in desired))
    failpoint("after-apply")
    wanted = {(o["kind"], o["metadata"]["name"]) for o in desired} | keep
    kinds = list(OWNED)
    for kind, gv in OPTIONAL_OWNED.items():
        if await kube.api_exists(gv):
            kinds.append(kind)
    # from the informers (no request) for the kinds they follow; a LIST for the others
    listed = await asyncio.gather(*(kube.owned(k, owner.namespace, owner.uid) for k in kinds))
    for kind, items in zip(kinds, listed, strict=True):
        for existing in items:
            name = existing["metadata"]["name"]
            if (kind, name) not in wanted:
                log.info("pruning %s/%s of %s/%s", kind, name, owner.kind, owner.name)
                await kube.delete(kind, owner.namespace, name)
                failpoint("after-prune-delete")


async def write_status(kube: Kube, body: Obj, health: Health, extra: Obj) -> bool:
    """Patch status only when it changes (a no-op write would wake every watcher). Emits an
    Event when Ready flips. Returns whether Ready changed."""
    meta, old = body["metadata"], body.get("status") or {}
    conds = conditions(old.get("conditions") or [], health, meta["generation"], now_rfc3339())
    new = {**extra, "observedGeneration": meta["generation"], "conditions": conds}
    if all(old.get(k) == v for k, v in new.items()):
        return False
    failpoint("before-status")
    await kube.patch_status(body["kind"], meta["namespace"], meta["name"], new)
    was, now = ready_of(body), health.ready
    if was != now and (was is not None or now):  # no warning for a brand-new resource
        reason = "Ready" if now else health.reason
        # best effort, as client-go's recorder: the pass does not wait for it
        kube.event_soon(body, "Normal" if now else "Warning", reason, health.message)
        return True
    return False


async def invalid(kube: Kube, body: Obj, err: Exception) -> None:
    await write_status(kube, body, Health(False, False, True, "InvalidSpec", str(err)[:500]), {})


def _recorded(obj: Obj | None) -> int | None:
    value = (((obj or {}).get("metadata") or {}).get("annotations") or {}).get(
        BOOTSTRAP_ANNOTATION, ""
    )
    return int(value) if value.isdigit() and int(value) > 0 else None


def bootstrap_replicas(body: Obj, spec: NovaCronRegionSpec, sts: Obj | None) -> tuple[int, bool]:
    """The members the group was created with: recorded on the region and its StatefulSet
    (either one is enough: should a crash or a replace lose the region's annotation, the
    StatefulSet's is read) by the first pass, which creates the group with spec.replicas;
    the nodes' bootstrap ``peers`` never change when the region scales. Returns the count
    and whether the region still needs it recorded (``record_bootstrap``, sent beside the
    children's applies)."""
    recorded = _recorded(body)
    if recorded is not None:
        return recorded, False
    return _recorded(sts) or spec.replicas, True


def cluster_state(body: Obj, step: Step) -> tuple[Literal["new", "existing"], bool]:
    """``existing`` once the group has formed: recorded on the region, or seen right now (a
    leader answered). Before that, pods bootstrap the group ("new"); after it, a bootstrap
    pod starting on an empty volume waits to be replaced (it reports ``rejoining`` and the
    sequencer removes and re-adds it). Returns the state and whether to record it."""
    annotations = (body.get("metadata") or {}).get("annotations") or {}
    if annotations.get(FORMED_ANNOTATION) == "true":
        return "existing", False
    if step.leader is not None:
        return "existing", True
    return "new", False


async def record_formed(kube: Kube, body: Obj) -> None:
    await _annotate(kube, body, {FORMED_ANNOTATION: "true"})


async def record_bootstrap(kube: Kube, body: Obj, count: int) -> None:
    await _annotate(kube, body, {BOOTSTRAP_ANNOTATION: str(count)})


async def _annotate(kube: Kube, body: Obj, annotations: dict[str, str]) -> None:
    meta = body["metadata"]
    patch = {"metadata": {"annotations": annotations}}
    await kube.write(
        "PATCH",
        path(body["kind"], meta["namespace"], meta["name"]),
        patch,
        "application/merge-patch+json",
    )


def ordinal_of(pod: Obj) -> int:
    return int(pod["metadata"]["name"].rsplit("-", 1)[1])


def world_of(
    owner: Owner,
    spec: NovaCronRegionSpec,
    sts: Obj | None,
    template_hash: str,
    pods: list[Obj],
    nodes: dict[str, ClusterInfo],
    manage: bool,
) -> World:
    if sts is None:
        return World(owner.name, spec.replicas, None, manage=manage)
    st = sts.get("status") or {}
    revision = st.get("updateRevision")
    rolling = (sts["spec"].get("updateStrategy") or {}).get("rollingUpdate") or {}
    return World(
        name=owner.name,
        desired=spec.replicas,
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
    service = f"{owner.name}-peers"
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
    await kube.event(_region_ref(owner), "Normal", EVENT_OF[action.kind], detail)
    # the crash points etcd-operator's tests use: each sits between two halves of a change
    if action.kind == "add_learner":
        failpoint("member-add")  # a learner, not yet promoted
    elif action.kind == "remove":
        failpoint("member-remove")  # removed from the group, its pod still there
    elif action.kind == "transfer":
        failpoint("leadership-transfer")  # transfer requested, the pod not yet released
    return True


def _region_ref(owner: Owner) -> Obj:
    return {"apiVersion": API_VERSION, "kind": owner.kind, "metadata": _meta(owner)}


def pod_ready(pod: Obj) -> bool:
    if pod["metadata"].get("deletionTimestamp"):
        return False
    conds = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conds)


def _meta(owner: Owner) -> Obj:
    return {"name": owner.name, "namespace": owner.namespace, "uid": owner.uid}


async def reconcile_region(kube: Kube, key: Key, opts: Options) -> Follow:
    body = await kube.cached_get("NovaCronRegion", key.namespace, key.name)
    if body is None:  # gone: whoever counted it looks again
        return [
            Key(kind, key.namespace, o["metadata"]["name"])
            for kind in ("DWCPFederation", "NovaCronCluster")
            for o in await kube.cached_list(kind, key.namespace)
        ]
    owner = Owner.of(body)
    agent_ns = opts.agent_namespace if opts.agent_namespace != key.namespace else None
    if body["metadata"].get("deletionTimestamp"):
        # owner references let the garbage collector take the local children; agents in
        # another namespace are ours to remove before the finalizer lets the region go
        if agent_ns:
            await cleanup_agents(kube, owner, agent_ns, set())
        await set_finalizer(kube, body, False)
        return []
    if agent_ns:
        await set_finalizer(kube, body, True)
    try:
        spec = NovaCronRegionSpec.model_validate(body["spec"])
    except ValidationError as e:
        await invalid(kube, body, e)
        return []
    cluster = await kube.cached_get("NovaCronCluster", key.namespace, spec.cluster_ref.name)
    if cluster is None:
        health = Health(False, False, True, "ClusterNotFound", f"{spec.cluster_ref.name} missing")
        await write_status(kube, body, health, {})
        return []
    cspec = NovaCronClusterSpec.model_validate(cluster["spec"])
    monitor = await kube.api_exists(OPTIONAL_OWNED["ServiceMonitor"])
    node_labels = selector_labels(owner, "node")
    selector = ",".join(f"{k}={v}" for k, v in node_labels.items())
    live, children = await asyncio.gather(
        kube.cached_get("StatefulSet", key.namespace, owner.name),
        kube.owned("Pod", key.namespace, owner.uid),
    )
    pods = [
        p
        for p in children
        if all((p["metadata"].get("labels") or {}).get(k) == v for k, v in node_labels.items())
    ]
    bootstrap, record = bootstrap_replicas(body, spec, live)
    ctx = RegionContext(cspec, spec.cluster_ref.name, monitor, agent_ns, bootstrap)
    (template,) = [o for o in build_region(owner, spec, ctx) if o["kind"] == "StatefulSet"]
    manage = opts.manage_members
    names = [p["metadata"]["name"] for p in pods if not p["metadata"].get("deletionTimestamp")]
    nodes = (
        await opts.nodes.probe(key.namespace, f"{owner.name}-peers", names)
        if manage and names
        else {}
    )
    world = world_of(
        owner, spec, live, template["metadata"]["annotations"][TEMPLATE_HASH], pods, nodes, manage
    )
    step = plan(world)
    state, record_state = cluster_state(body, step)
    desired = build_region(
        owner,
        spec,
        replace(ctx, replicas=step.replicas, partition=step.partition, cluster_state=state),
    )
    await asyncio.gather(
        apply_and_prune(
            kube, owner, [o for o in desired if o["metadata"]["namespace"] == key.namespace]
        ),
        *([record_bootstrap(kube, body, bootstrap)] if record else []),
    )
    if record_state:  # after the ConfigMap says so, and in order with the bootstrap patch
        await record_formed(kube, body)
    if agent_ns:
        remote = [o for o in desired if o["metadata"]["namespace"] == agent_ns]
        for obj in remote:
            await kube.apply(obj)
        await cleanup_agents(
            kube, owner, agent_ns, {(o["kind"], o["metadata"]["name"]) for o in remote}
        )
    if step.released:
        failpoint("after-release")
        await kube.event(
            _region_ref(owner),
            "Normal",
            "RollingPod",
            f"replacing {step.released} (partition {step.partition})",
        )
    acted = await execute(kube, owner, opts, step)
    ds_ns, ds_name = agent_names(owner, ctx)
    sts, ds, deploy = await asyncio.gather(
        kube.cached_get("StatefulSet", key.namespace, owner.name),
        kube.cached_get("DaemonSet", ds_ns, ds_name),
        kube.cached_get("Deployment", key.namespace, f"{owner.name}-gateway"),
    )
    health = region_health(
        workload_health(spec.replicas, sts, ds, deploy, spec.agent.enabled), step, world
    )
    st = (sts or {}).get("status") or {}
    leader = step.leader
    extra = {
        "replicas": st.get("replicas", 0),
        "readyReplicas": st.get("readyReplicas", 0),
        "selector": selector,
        "protocol": spec.protocol,
        "leader": leader.node if leader else None,
        "term": leader.term if leader else None,
        "commitIndex": leader.commit_index if leader else None,
        "members": sorted(leader.voters) if leader else None,
    }
    changed = await write_status(kube, body, health, extra)
    follow: Follow = []
    if manage and not step.done:
        # the nodes' progress (a learner catching up, a new leader) raises no Kubernetes
        # event: look again soon, sooner right after acting, slowly while nobody answers
        soon = 0.3 if (step.action and acted) or step.released else 1.0
        follow.append(Later(key, soon if world.nodes else 5.0))
    if not changed:
        return follow
    feds = await kube.cached_list("DWCPFederation", key.namespace)
    parents = [Key("DWCPFederation", key.namespace, f["metadata"]["name"]) for f in feds]
    return [*follow, *parents, Key("NovaCronCluster", key.namespace, spec.cluster_ref.name)]


def region_health(workloads: Health, step: Step, world: World) -> Health:
    """With members managed, Ready also needs the group to have a leader and exactly the
    members the spec asks for. A group the operator cannot reach keeps the pods' verdict
    (their readiness probe is the node's own /readyz: a caught-up member) and says so in
    GroupReachable=False: the operator, not the region, has lost its way to the nodes, and
    membership changes and rollouts wait until it finds it again."""
    if not world.manage or world.sts_replicas is None:
        return workloads
    if not world.nodes:
        msg = "no node answers its admin API: membership changes and rollouts wait"
        return replace(workloads, group=Group(False, "GroupUnreachable", msg))
    leader = step.leader
    group = Group(
        True,
        "Answering",
        f"{len(world.nodes)} nodes answer; leader {leader.node}, term {leader.term}"
        if leader
        else f"{len(world.nodes)} nodes answer; no leader",
    )
    if leader is None and workloads.ready:
        return Health(False, True, True, "NoLeader", "the group has no leader", group)
    if workloads.ready and not step.done:
        return Health(False, True, False, "Reconfiguring", step.waiting, group)
    return replace(workloads, group=group)


async def reconcile_cluster(kube: Kube, key: Key, opts: Options) -> Follow:
    body = await kube.cached_get("NovaCronCluster", key.namespace, key.name)
    if body is None or body["metadata"].get("deletionTimestamp"):
        return []
    owner = Owner.of(body)
    try:
        spec = NovaCronClusterSpec.model_validate(body["spec"])
    except ValidationError as e:
        await invalid(kube, body, e)
        return []
    desired = build_cluster(owner, spec)
    ca = await kube.get("Secret", key.namespace, ca_secret_name(owner))
    if spec.tls.mode == "generated" and ca is None:
        try:  # create, never apply: a CA must not be regenerated on every pass
            ca = await kube.create(build_ca_secret(owner, spec))
        except ApiError as e:
            if e.status != 409:
                raise
    keep = frozenset({("Secret", ca_secret_name(owner))} if spec.tls.mode == "generated" else ())
    await apply_and_prune(kube, owner, desired, keep)
    regions = [
        r
        for r in await kube.cached_list("NovaCronRegion", key.namespace)
        if (r.get("spec") or {}).get("clusterRef", {}).get("name") == key.name
    ]
    ready = sum(1 for r in regions if ready_of(r))
    all_ready = ready == len(regions)
    health = (
        Health(True, False, False, "AllReady", f"{ready}/{len(regions)} regions ready")
        if all_ready
        else Health(False, True, False, "RegionsProgressing", f"{ready}/{len(regions)} ready")
    )
    extra = {"caSecretName": ca_secret_name(owner), "regions": len(regions), "readyRegions": ready}
    await write_status(kube, body, health, extra)
    return []


async def reconcile_federation(kube: Kube, key: Key, opts: Options) -> Follow:
    body = await kube.cached_get("DWCPFederation", key.namespace, key.name)
    if body is None or body["metadata"].get("deletionTimestamp"):
        return []
    owner = Owner.of(body)
    try:
        spec = DWCPFederationSpec.model_validate(body["spec"])
    except ValidationError as e:
        await invalid(kube, body, e)
        return []
    await apply_and_prune(kube, owner, build_federation(owner, spec))
    members: list[Obj] = []
    for m in spec.members:
        if m.region_ref is None:
            members.append({"name": m.name, "local": False, "ready": True})
            continue
        region = await kube.cached_get("NovaCronRegion", key.namespace, m.region_ref.name)
        members.append({"name": m.name, "local": True, "ready": bool(ready_of(region))})
    ready = sum(1 for m in members if m["ready"])
    waiting = [m["name"] for m in members if not m["ready"]]
    health = (
        Health(True, False, False, "AllMembersReady", f"{ready}/{len(members)} members ready")
        if not waiting
        else Health(False, True, False, "MembersProgressing", "waiting for " + ", ".join(waiting))
    )
    await write_status(kube, body, health, {"members": members, "readyMembers": ready})
    return []


RECONCILERS = {
    "NovaCronRegion": reconcile_region,
    "NovaCronCluster": reconcile_cluster,
    "DWCPFederation": reconcile_federation,
}
