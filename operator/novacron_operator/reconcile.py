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
from novacron_operator.builders import Owner
from novacron_operator.builders.common import selector_labels
from novacron_operator.builders.federation import federation_of
from novacron_operator.builders.region import (
    BOOTSTRAP_ANNOTATION,
    FORMED_ANNOTATION,
    TEMPLATE_HASH,
    RegionContext,
    agent_names,
    agents_deployed,
    build_region,
)
from novacron_operator.capabilities import available
from novacron_operator.failpoints import failpoint
from novacron_operator.kube import OPTIONAL_OWNED, OWNED, ApiError, Kube, path
from novacron_operator.models import (
    DWCPFederationSpec,
    NovaCronClusterSpec,
    NovaCronRegionSpec,
)
from novacron_operator.sequencer import Pod, Step, World, plan
from novacron_operator.status import (
    Cond,
    Health,
    conditions,
    events,
    no,
    now_rfc3339,
    ok,
    progressing_health,
    workload_health,
)
from novacron_operator.volumes import resize

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


class Rejected(Exception):
    """The API server refused some children (4xx other than a conflict or throttling): the
    pass reports it (Degraded, a Warning Event) and fails, so the work queue retries it
    with exponential backoff instead of at once, forever."""

    def __init__(self, failures: list[tuple[str, str, ApiError]]) -> None:
        self.failures = failures
        super().__init__(self.message())

    def message(self) -> str:
        return "; ".join(f"{kind} {name}: {e}" for kind, name, e in self.failures)[:900]


def refused(e: BaseException) -> bool:
    return isinstance(e, ApiError) and 400 <= e.status < 500 and e.status not in (409, 429)


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

    results = await asyncio.gather(*(one(o) for o in desired), return_exceptions=True)
    failures = [
        (o["kind"], o["metadata"]["name"], r)
        for o, r in zip(desired, results, strict=True)
        if isinstance(r, ApiError) and refused(r)
    ]
    for r in results:  # anything else (a timeout, a 5xx) fails the pass as it is
        if isinstance(r, BaseException) and not refused(r):
            raise r
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
    if failures:
        raise Rejected(failures)


async def write_status(kube: Kube, body: Obj, health: Health, extra: Obj) -> bool:
    """Patch status only when it changes (a no-op write would wake every watcher). Posts
    an Event for each condition that turns bad (Warning) and when Ready turns True.
    Returns whether Ready changed."""
    meta, old = body["metadata"], body.get("status") or {}
    old_conds = old.get("conditions") or []
    conds = conditions(old_conds, health, meta["generation"], now_rfc3339())
    new = {**extra, "observedGeneration": meta["generation"], "conditions": conds}
    if all(old.get(k) == v for k, v in new.items()):
        return False
    failpoint("before-status")
    try:
        await kube.patch_status(body["kind"], meta["namespace"], meta["name"], new)
    except ApiError as e:
        if e.status == 404:  # deleted since our copy was taken: nothing left to report on
            return False
        raise
    for type_, reason, message in events(old_conds, health):
        # best effort, as client-go's recorder: the pass does not wait for it
        kube.event_soon(body, type_, reason, message)
    was = next((c.get("status") for c in old_conds if c.get("type") == "Ready"), None)
    return was != ("True" if health.is_ready else "False")


async def invalid(kube: Kube, body: Obj, err: Exception) -> None:
    msg = str(err)[:500]
    await write_status(
        kube, body, Health(no("Ready", "InvalidSpec", msg)).degrade("InvalidSpec", msg), {}
    )


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


def duplicate_of(body: Obj, spec: NovaCronRegionSpec, regions: list[Obj]) -> str | None:
    """An earlier NovaCronRegion of the namespace with the same regionName (two groups must
    not claim one region: the later one is refused)."""

    def order(r: Obj) -> tuple[str, str]:
        meta = r["metadata"]
        return (str(meta.get("creationTimestamp") or ""), str(meta["name"]))

    mine = order(body)
    for other in regions:
        if other["metadata"]["name"] == body["metadata"]["name"]:
            continue
        if other["metadata"].get("deletionTimestamp"):
            continue
        if (other.get("spec") or {}).get("regionName") == spec.region_name and order(other) < mine:
            return str(other["metadata"]["name"])
    return None


def protocol_condition(protocol: str) -> Cond:
    if protocol == "raft":
        return ok("ProtocolSupported", "Raft", "the nodes run raft, as asked")
    return no(
        "ProtocolSupported",
        "NotImplemented",
        f"spec.protocol {protocol}: the nodes run raft only (multi-paxos, epaxos and adaptive "
        "are not implemented yet); status.protocol says what runs",
    )


async def federations_of(kube: Kube, namespace: str) -> dict[str, DWCPFederationSpec]:
    out: dict[str, DWCPFederationSpec] = {}
    for f in await kube.cached_list("DWCPFederation", namespace):
        if f["metadata"].get("deletionTimestamp"):
            continue
        try:
            out[f["metadata"]["name"]] = DWCPFederationSpec.model_validate(f.get("spec") or {})
        except ValidationError:
            continue  # its own pass reports it
    return out


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
    if not available("agent"):
        agent_ns = None  # no agents deployed, so none to clean up behind a finalizer
    if body["metadata"].get("deletionTimestamp"):
        # owner references let the garbage collector take the local children; agents in
        # another namespace are ours to remove before the finalizer lets the region go
        if agent_ns:
            await cleanup_agents(kube, owner, agent_ns, set())
        await set_finalizer(kube, body, False)
        return []
    try:
        spec = NovaCronRegionSpec.model_validate(body["spec"])
    except ValidationError as e:
        await invalid(kube, body, e)
        return []
    if agent_ns and agents_deployed(spec):
        await set_finalizer(kube, body, True)
    cluster = await kube.cached_get("NovaCronCluster", key.namespace, spec.cluster_ref.name)
    if cluster is None:
        msg = f"NovaCronCluster {spec.cluster_ref.name} does not exist in {key.namespace}"
        health = Health(no("Ready", "ClusterNotFound", msg)).degrade("ClusterNotFound", msg)
        await write_status(kube, body, health, {})
        return []
    cspec = NovaCronClusterSpec.model_validate(cluster["spec"])
    eff = RegionContext(cspec, spec.cluster_ref.name).eff(spec)
    protocol = protocol_condition(eff.protocol)
    monitor = await kube.api_exists(OPTIONAL_OWNED["ServiceMonitor"])
    node_labels = selector_labels(owner, "node")
    selector = ",".join(f"{k}={v}" for k, v in node_labels.items())
    live, children, regions, feds = await asyncio.gather(
        kube.cached_get("StatefulSet", key.namespace, owner.name),
        kube.owned("Pod", key.namespace, owner.uid),
        kube.cached_list("NovaCronRegion", key.namespace),
        federations_of(kube, key.namespace),
    )
    base = {"selector": selector, "protocol": "raft"}
    duplicate = duplicate_of(body, spec, regions)
    if duplicate is not None and live is None:
        msg = (
            f"regionName {spec.region_name} is already used by NovaCronRegion {duplicate}: "
            "nothing is deployed for this one; give it another regionName or delete it"
        )
        health = Health(no("Ready", "DuplicateRegionName", msg)).degrade("DuplicateRegionName", msg)
        await write_status(kube, body, health.with_extra(protocol), base)
        return []
    pods = [
        p
        for p in children
        if all((p["metadata"].get("labels") or {}).get(k) == v for k, v in node_labels.items())
    ]
    bootstrap, record = bootstrap_replicas(body, eff.replicas, live)
    ctx = RegionContext(
        cspec,
        spec.cluster_ref.name,
        monitor,
        agent_ns,
        bootstrap,
        federation=federation_of(owner.name, feds),
    )
    (template,) = [o for o in build_region(owner, spec, ctx) if o["kind"] == "StatefulSet"]
    manage = opts.manage_members
    names = [p["metadata"]["name"] for p in pods if not p["metadata"].get("deletionTimestamp")]
    nodes = (
        await opts.nodes.probe(key.namespace, f"{owner.name}-peers", names)
        if manage and names
        else {}
    )
    template_hash = template["metadata"]["annotations"][TEMPLATE_HASH]
    world = world_of(owner, eff.replicas, live, template_hash, pods, nodes, manage)
    step = plan(world)
    steady = world.template_current and world.sts_replicas == eff.replicas and step.partition == 0
    sized = await resize(kube, owner, live, eff.size, steady)
    state, record_state = cluster_state(body, step)
    desired = build_region(
        owner,
        spec,
        replace(
            ctx,
            replicas=step.replicas,
            partition=step.partition,
            cluster_state=state,
            claim_size=sized.keep,
        ),
    )
    if sized.skip_statefulset:
        desired = [o for o in desired if o["kind"] != "StatefulSet"]
    keep = frozenset({("StatefulSet", owner.name)} if sized.skip_statefulset else ())
    rejected: Rejected | None = None
    try:
        await asyncio.gather(
            apply_and_prune(
                kube,
                owner,
                [o for o in desired if o["metadata"]["namespace"] == key.namespace],
                keep,
            ),
            *([record_bootstrap(kube, body, bootstrap)] if record else []),
        )
    except Rejected as e:
        rejected = e
    if record_state:  # after the ConfigMap says so, and in order with the bootstrap patch
        await record_formed(kube, body)
    if agent_ns:
        remote = [o for o in desired if o["metadata"]["namespace"] == agent_ns]
        for obj in remote:
            await kube.apply(obj)
        await cleanup_agents(
            kube, owner, agent_ns, {(o["kind"], o["metadata"]["name"]) for o in remote}
        )
    acted = False
    if rejected is None and not sized.skip_statefulset:
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
    workloads = workload_health(
        eff.replicas, sts, ds, deploy, agents_deployed(spec), available("gateway")
    )
    health = region_health(workloads, step, world).with_extra(sized.condition, protocol)
    if duplicate is not None:
        msg = (
            f"regionName {spec.region_name} is also used by NovaCronRegion {duplicate}, "
            "created earlier: two groups claim one region; give this one another regionName"
        )
        health = health.degrade("DuplicateRegionName", msg)
    if rejected is not None:
        health = health.degrade("ChildApplyFailed", rejected.message())
    st = (sts or {}).get("status") or {}
    leader = step.leader
    extra = {
        **base,
        "replicas": st.get("replicas", 0),
        "readyReplicas": st.get("readyReplicas", 0),
        "leader": leader.node if leader else None,
        "term": leader.term if leader else None,
        "commitIndex": leader.commit_index if leader else None,
        "members": sorted(leader.voters) if leader else None,
    }
    changed = await write_status(kube, body, health, extra)
    if rejected is not None:
        raise rejected
    follow: Follow = []
    if sized.again:
        follow.append(Later(key, 1.0))
    if manage and not step.done:
        # the nodes' progress (a learner catching up, a new leader) raises no Kubernetes
        # event: look again soon, sooner right after acting, slowly while nobody answers
        soon = 0.3 if (step.action and acted) or step.released else 1.0
        follow.append(Later(key, soon if world.nodes else 5.0))
    if not changed:
        return follow
    parents = [Key("DWCPFederation", key.namespace, f) for f in feds]
    return [*follow, *parents, Key("NovaCronCluster", key.namespace, spec.cluster_ref.name)]


def region_health(workloads: Health, step: Step, world: World) -> Health:
    """With members managed, Ready also needs the group to answer with a leader and have
    exactly the members the spec asks for: a region whose nodes the operator cannot reach
    is not Ready (GroupReachable=False says so), whatever its pods' probes say. Without
    member management (pods that run no node, kwok) the pods' readiness is all there is."""
    if not world.manage or world.sts_replicas is None:
        return workloads
    if not world.nodes:
        msg = "no node answers its admin API: membership changes and rollouts wait"
        unreachable = no("GroupReachable", "GroupUnreachable", msg)
        ready = no("Ready", "GroupUnreachable", "the operator reaches no node of the group")
        return replace(workloads, ready=ready).with_extra(unreachable)
    leader = step.leader
    reach = ok(
        "GroupReachable",
        "Answering",
        f"{len(world.nodes)} nodes answer their admin API",
    )
    if leader is None:
        msg = f"{len(world.nodes)} nodes answer, none leads: the group cannot serve writes"
        return workloads.degrade("NoLeader", msg).with_extra(reach)
    if workloads.is_ready and not step.done:
        return progressing_health(
            "Reconfiguring", step.waiting, f"serving (leader {leader.node}), changing members"
        ).with_extra(reach)
    if workloads.is_ready:
        msg = f"leader {leader.node} (term {leader.term}), {len(leader.voters)} voters, serving"
        return replace(workloads, ready=ok("Ready", "Serving", msg)).with_extra(reach)
    return workloads.with_extra(reach)
