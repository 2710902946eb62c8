"""The NovaCronRegion pass: read the region's world (its cluster, federation, pods, the
Kubernetes nodes its agents run on, what its nodes' admin API says), let the day-2 sequencer
decide one step, build every child, apply and prune them, perform the step, report status.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from dataclasses import replace
from typing import Any

from pydantic import ValidationError

from novacron_operator import names
from novacron_operator.builders import Owner
from novacron_operator.builders.agent import PUBLIC_KEYS
from novacron_operator.builders.common import (
    OWNER_LABEL,
    OWNER_NAMESPACE_LABEL,
    selector_labels,
)
from novacron_operator.builders.federation import federation_of
from novacron_operator.builders.region import (
    TEMPLATE_HASH,
    RegionContext,
    agent_names,
    agents_deployed,
    build_region,
    gateway_deployed,
)
from novacron_operator.capabilities import available
from novacron_operator.failpoints import failpoint
from novacron_operator.federated import Federated, Member, keys_secret, local_regions, view
from novacron_operator.health_status import read_region_health
from novacron_operator.kube import OPTIONAL_OWNED, ApiError, Kube
from novacron_operator.members import (
    bootstrap_replicas,
    cluster_state,
    execute,
    record_bootstrap,
    record_formed,
    region_ref,
    world_of,
)
from novacron_operator.models import (
    DWCPFederationSpec,
    NovaCronClusterSpec,
    NovaCronRegionSpec,
    NovaCronRegionStatus,
    RegionHealthStatus,
)
from novacron_operator.protocols import bootstrap_protocol, protocol_condition, record_protocol
from novacron_operator.reconcile import (
    Follow,
    Key,
    Later,
    Options,
    Rejected,
    apply_and_prune,
    invalid,
    refused,
    set_finalizer,
    write_status,
)
from novacron_operator.sequencer import Step, World, plan
from novacron_operator.status import (
    Cond,
    Health,
    no,
    ok,
    progressing_health,
    workload_health,
)
from novacron_operator.volumes import resize

Obj = dict[str, Any]
log = logging.getLogger("novacron.operator")

# set by earlier versions; removed on sight (orphaned agents are swept instead, see below)
AGENT_FINALIZER = "novacron.io/agents"
AGENT_KINDS = ("DaemonSet", "ConfigMap", "ServiceAccount", "Secret")


async def sweep_orphaned_agents(kube: Kube, ns: str) -> int:
    """Remove agent objects whose region is gone. No owner reference reaches the agent
    namespace and no finalizer holds a region (a delete or a GitOps prune after the
    operator was uninstalled would hang on it), so any pass cleans up after a region
    deleted while no operator ran. Only when every watched namespace's regions are known:
    a region not yet listed would look gone. Returns how many objects it deleted."""
    regions = {
        inf.namespace: inf for (kind, _), inf in kube.informers.items() if kind == "NovaCronRegion"
    }
    if not regions or not all(i.synced.is_set() and not i.forbidden for i in regions.values()):
        return 0
    live = {o["metadata"].get("uid") for inf in regions.values() for o in inf.items.values()}
    gone = 0
    for kind in AGENT_KINDS:
        for obj in await kube.cached_list(kind, ns):
            meta = obj["metadata"]
            labels = meta.get("labels") or {}
            uid = labels.get(OWNER_LABEL)
            # only agents of regions this operator watches: another operator may share the
            # agent namespace
            home = labels.get(OWNER_NAMESPACE_LABEL)
            if uid and uid not in live and home and (home in regions or "" in regions):
                log.info("removing %s %s/%s: its region is gone", kind, ns, meta["name"])
                await kube.delete(kind, ns, meta["name"])
                gone += 1
    return gone


async def cleanup_agents(kube: Kube, owner: Owner, ns: str, keep: set[tuple[str, str]]) -> None:
    """Prune agent objects in the agent namespace (no owner references can reach there)."""
    for kind in AGENT_KINDS:
        for existing in await kube.owned(kind, ns, owner.uid):
            if (kind, existing["metadata"]["name"]) not in keep:
                await kube.delete(kind, ns, existing["metadata"]["name"])


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


async def federation_view(
    kube: Kube, owner: Owner, spec: NovaCronRegionSpec, feds: dict[str, DWCPFederationSpec]
) -> tuple[str | None, Federated, dict[str, Member]]:
    """The region's federation (its name), what the region reads of it, and the
    namespace's regions as the federation sees them."""
    ns = owner.namespace
    fed = federation_of(owner.name, feds)
    regions, clusters, nodes = await asyncio.gather(
        kube.cached_list("NovaCronRegion", ns),
        kube.cached_list("NovaCronCluster", ns),
        kube.cached_list("Node", ""),
    )
    members = local_regions(regions, clusters, nodes)
    fed_body = await kube.cached_get("DWCPFederation", ns, fed) if fed else None
    pair = (Owner.of(fed_body), feds[fed]) if fed and fed_body else None
    return fed, view(owner.name, ns, spec, pair, members), members


async def wireguard_keys(
    kube: Kube,
    owner: Owner,
    ctx: RegionContext,
    fed_spec: DWCPFederationSpec,
    seen: Federated,
) -> tuple[list[Obj], bool]:
    """The region's key Secret (WireGuard tunnels), and whether its public keys changed."""
    if fed_spec.tunnels.kind != "wireguard" or seen.agents is None or seen.plan is None:
        return [], False
    agent_ns, agent_name = agent_names(owner, ctx)
    mine = list(seen.agents.seats)
    others: dict[str, str] = {}
    for ref in {s.ref for s in seen.plan.seats} - {owner.name}:
        other_ns, other_name = names.agent(ref, owner.namespace, ctx.agent_namespace)
        theirs = await kube.cached_get("Secret", other_ns, names.wireguard_secret(other_name))
        raw = ((theirs or {}).get("metadata") or {}).get("annotations") or {}
        others |= {k: v for k, v in _json_map(raw.get(PUBLIC_KEYS)).items()}
    # the private keys: not in the cache (it holds no Secret data), so read the Secret
    live = await kube.get("Secret", agent_ns, names.wireguard_secret(agent_name))
    secret, changed = keys_secret(
        owner,
        agent_ns,
        agent_name,
        mine,
        live,
        others,
        fed_spec.tunnels.key_rotation_days,
        dt.datetime.now(dt.UTC),
    )
    return [secret], changed


def _json_map(raw: str | None) -> dict[str, str]:
    import json

    try:
        got = json.loads(raw) if raw else {}
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in got.items()} if isinstance(got, dict) else {}


def agents_condition(spec: NovaCronRegionSpec, seen: Federated, nodes_known: bool) -> Cond:
    """Where the agents run, or why nowhere."""
    seats = seen.agents.seats if seen.agents else ()
    if seats:
        where = ", ".join(f"{s.host.node} ({s.host.ip}, as {s.name})" for s in seats)
        return ok("AgentsPlaced", "OnNodes", f"{len(seats)} agents: {where}")
    if not nodes_known:
        return no(
            "AgentsPlaced",
            "NodesUnreadable",
            "the operator may not list Kubernetes nodes (get/list/watch nodes): it cannot "
            "tell where the agents run nor give them their addresses",
        )
    selector = ", ".join(f"{k}={v}" for k, v in sorted(spec.scheduling.node_selector.items()))
    return no(
        "AgentsPlaced",
        "NoNode",
        f"no Kubernetes node labelled topology.kubernetes.io/region={spec.region_name}"
        + (f" and {selector}" if selector else "")
        + " without a taint the agents do not tolerate: no agent runs",
    )


async def reconcile_region(kube: Kube, key: Key, opts: Options) -> Follow:
    body = await kube.cached_get("NovaCronRegion", key.namespace, key.name)
    if body is None:  # gone: its agents elsewhere go, whoever counted it looks again
        if opts.agent_namespace and opts.agent_namespace != key.namespace:
            await sweep_orphaned_agents(kube, opts.agent_namespace)
        return [
            Key(kind, key.namespace, o["metadata"]["name"])
            for kind in ("DWCPFederation", "NovaCronCluster", "NovaCronRegion")
            for o in await kube.cached_list(kind, key.namespace)
        ]
    owner = Owner.of(body)
    agent_ns = opts.agent_namespace if opts.agent_namespace != key.namespace else None
    if not available("agent"):
        agent_ns = None  # no agents deployed, so none to clean up behind a finalizer
    # no finalizer (see sweep_orphaned_agents): one left by an earlier version goes
    await set_finalizer(kube, body, AGENT_FINALIZER, False)
    if body["metadata"].get("deletionTimestamp"):
        # owner references let the garbage collector take the local children; agents in
        # another namespace are ours to remove
        if agent_ns:
            await cleanup_agents(kube, owner, agent_ns, set())
        return []
    try:
        spec = NovaCronRegionSpec.model_validate(body["spec"])
    except ValidationError as e:
        await invalid(kube, body, e)
        return []
    cluster = await kube.cached_get("NovaCronCluster", key.namespace, spec.cluster_ref.name)
    if cluster is None:
        msg = f"NovaCronCluster {spec.cluster_ref.name} does not exist in {key.namespace}"
        health = Health(no("Ready", "ClusterNotFound", msg)).degrade("ClusterNotFound", msg)
        await write_status(kube, body, health, NovaCronRegionStatus())
        return []
    cspec = NovaCronClusterSpec.model_validate(cluster["spec"])
    eff = RegionContext(cspec, spec.cluster_ref.name).eff(spec)
    monitor = await kube.api_exists(OPTIONAL_OWNED["ServiceMonitor"])
    node_labels = selector_labels(owner, "node")
    selector = ",".join(f"{k}={v}" for k, v in node_labels.items())
    live, children, regions, feds = await asyncio.gather(
        kube.cached_get("StatefulSet", key.namespace, owner.name),
        kube.owned("Pod", key.namespace, owner.uid),
        kube.cached_list("NovaCronRegion", key.namespace),
        federations_of(kube, key.namespace),
    )
    running, record_proto = bootstrap_protocol(body, eff.protocol, live)
    protocol = protocol_condition(eff.protocol, running)
    base = NovaCronRegionStatus(selector=selector, protocol=running)
    if running is None:  # a new region asking for what cannot run: nothing is deployed
        health = Health(no("Ready", protocol.reason, protocol.message)).degrade(
            protocol.reason, protocol.message
        )
        await write_status(kube, body, health.with_extra(protocol), base)
        return []
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
    fed, seen, _ = await federation_view(kube, owner, spec, feds)
    ctx = RegionContext(
        cspec,
        spec.cluster_ref.name,
        monitor,
        agent_ns,
        bootstrap,
        protocol=running,
        federation=fed,
        topology=seen.topology,
        gateway_peers=seen.gateway_peers,
        agents=seen.agents,
        probe_hosts=seen.probe_hosts,
    )
    (template,) = [o for o in build_region(owner, spec, ctx) if o["kind"] == "StatefulSet"]
    manage = opts.manage_members
    pod_names = [p["metadata"]["name"] for p in pods if not p["metadata"].get("deletionTimestamp")]
    nodes = (
        await opts.nodes.probe(key.namespace, names.peers_service(owner.name), pod_names)
        if manage and pod_names
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
    keys_changed = False
    if agents_deployed(spec) and fed is not None:
        secrets, keys_changed = await wireguard_keys(kube, owner, ctx, feds[fed], seen)
        desired += secrets
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
            *([record_protocol(kube, body, running)] if record_proto else []),
        )
    except Rejected as e:
        rejected = e
    if record_state:  # after the ConfigMap says so, and in order with the bootstrap patch
        await record_formed(kube, body)
    if agent_ns:
        remote = [o for o in desired if o["metadata"]["namespace"] == agent_ns]
        # refused like the children here: reported (Degraded) and retried with backoff
        failures = list(rejected.failures) if rejected else []
        for obj in remote:
            try:
                await kube.apply_if_changed(obj)
            except ApiError as e:
                if not refused(e):
                    raise
                failures.append((obj["kind"], obj["metadata"]["name"], e))
        if failures:
            rejected = Rejected(failures)
        await cleanup_agents(
            kube, owner, agent_ns, {(o["kind"], o["metadata"]["name"]) for o in remote}
        )
        await sweep_orphaned_agents(kube, agent_ns)
    acted = False
    if rejected is None and not sized.skip_statefulset:
        if step.released:
            failpoint("after-release")
            await kube.event(
                region_ref(owner),
                "Normal",
                "RollingPod",
                f"replacing {step.released} (partition {step.partition})",
            )
        acted = await execute(kube, owner, opts, step)
    ds_ns, ds_name = agent_names(owner, ctx)
    sts, ds, deploy = await asyncio.gather(
        kube.cached_get("StatefulSet", key.namespace, owner.name),
        kube.cached_get("DaemonSet", ds_ns, ds_name),
        kube.cached_get("Deployment", key.namespace, names.gateway(owner.name)),
    )
    agents = agents_deployed(spec)
    workloads = workload_health(eff.replicas, sts, ds, deploy, agents, gateway_deployed())
    extra_conds = [sized.condition, protocol]
    if agents:
        extra_conds.append(agents_condition(spec, seen, not kube.forbidden("Node", "")))
    health = region_health(workloads, step, world).with_extra(*extra_conds)
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
    health_doc, health_again = None, 0.0
    if manage and nodes:
        ask = sorted(nodes, key=lambda pod: pod != (leader.node if leader else None))
        old_health = (body.get("status") or {}).get("health")
        service = names.peers_service(owner.name)
        now = dt.datetime.now(dt.UTC)
        health_doc, health_again = await read_region_health(
            opts.nodes, key.namespace, service, ask, old_health, now
        )
    status = base.model_copy(
        update={
            "replicas": st.get("replicas", 0),
            "ready_replicas": st.get("readyReplicas", 0),
            "leader": leader.node if leader else None,
            "term": leader.term if leader else None,
            "commit_index": leader.commit_index if leader else None,
            "members": sorted(leader.voters) if leader else None,
            "health": (
                None if health_doc is None else RegionHealthStatus.model_validate(health_doc)
            ),
        }
    )
    changed = await write_status(kube, body, health, status)
    if rejected is not None:
        raise rejected
    follow: Follow = []
    if sized.again:
        follow.append(Later(key, 1.0))
    if health_doc is not None:  # the score and burn rates move: read them again then
        follow.append(Later(key, health_again))
    if manage and not step.done:
        # the nodes' progress (a learner catching up, a new leader) raises no Kubernetes
        # event: look again soon, sooner right after acting, slowly while nobody answers
        soon = 0.3 if (step.action and acted) or step.released else 1.0
        follow.append(Later(key, soon if world.nodes else 5.0))
    if keys_changed and seen.plan is not None:
        # the other regions' key Secrets carry this region's public keys
        follow += [
            Key("NovaCronRegion", key.namespace, r)
            for r in sorted({s.ref for s in seen.plan.seats} - {owner.name})
        ]
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
    if step.leaderless:
        return leaderless_health(workloads, step, world)
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


def leaderless_health(workloads: Health, step: Step, world: World) -> Health:
    """A group of a FIXED_MEMBERSHIP protocol (epaxos, eventual): every node takes writes,
    so Ready needs every node to answer, not a leader."""
    protocol = next(iter(world.nodes.values())).protocol
    n = len(world.nodes)
    reach = ok("GroupReachable", "Answering", f"{n} nodes answer their admin API")
    if workloads.is_ready and not step.done:
        return progressing_health(
            "Reconfiguring", step.waiting, f"serving ({protocol}, leaderless), {step.waiting}"
        ).with_extra(reach)
    if workloads.is_ready:
        msg = f"{protocol}: {n} nodes answer, every one takes writes (no leader), serving"
        return replace(workloads, ready=ok("Ready", "Serving", msg)).with_extra(reach)
    return workloads.with_extra(reach)
