"""Reconcile passes of the resources that own no node: NovaCronCluster (the CA, the
defaults its regions take) and DWCPFederation (the topology its member regions' nodes read).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from pydantic import ValidationError

from novacron_operator import federated
from novacron_operator.builders import Owner, build_ca_secret, build_cluster, build_federation
from novacron_operator.builders.cluster import ca_secret_name
from novacron_operator.builders.federation import agent_plan, topology_name
from novacron_operator.federated import Member
from novacron_operator.kube import ApiError, Kube
from novacron_operator.models import (
    DWCPFederationSpec,
    DWCPFederationStatus,
    MemberStatus,
    NovaCronClusterSpec,
    NovaCronClusterStatus,
)
from novacron_operator.reconcile import (
    Follow,
    Key,
    Options,
    Rejected,
    apply_and_prune,
    invalid,
    write_status,
)
from novacron_operator.status import Cond, Health, no, ok, progressing_health, ready_of

Obj = dict[str, Any]
log = logging.getLogger("novacron.operator")


def tls_condition(spec: NovaCronClusterSpec, cluster: str) -> Cond:
    if spec.tls.mode == "disabled":
        return ok("TLSSupported", "Disabled", "tls.mode disabled: node traffic is plaintext")
    source = "generated" if spec.tls.mode == "generated" else "issued by cert-manager"
    return no(
        "TLSSupported",
        "NotImplemented",
        f"tls.mode {spec.tls.mode}: the CA Secret {cluster}-ca is {source} and mounted in the "
        "node pods, but the nodes are not given certificates from it yet: traffic between "
        "nodes is plaintext",
    )


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
    rejected: Rejected | None = None
    try:
        await apply_and_prune(kube, owner, desired, keep)
    except Rejected as e:
        rejected = e
    regions = [
        r
        for r in await kube.cached_list("NovaCronRegion", key.namespace)
        if (r.get("spec") or {}).get("clusterRef", {}).get("name") == key.name
    ]
    ready = sorted(r["metadata"]["name"] for r in regions if ready_of(r))
    waiting = sorted(r["metadata"]["name"] for r in regions if not ready_of(r))
    count = f"{len(ready)}/{len(regions)} regions ready"
    health = (
        Health(ok("Ready", "AllRegionsReady", count))
        if not waiting
        else progressing_health("RegionsProgressing", "waiting for " + ", ".join(waiting), count)
    ).with_extra(tls_condition(spec, owner.name))
    if rejected is not None:
        health = health.degrade("ChildApplyFailed", rejected.message())
    typed = NovaCronClusterStatus(
        ca_secret_name=ca_secret_name(owner), regions=len(regions), ready_regions=len(ready)
    )
    status = body.get("status") or {}
    spec_changed = status.get("observedGeneration") != body["metadata"]["generation"]
    await write_status(kube, body, health, typed)
    if rejected is not None:
        raise rejected
    # its regions take regionDefaults: a spec change is theirs to apply
    return (
        [Key("NovaCronRegion", key.namespace, r["metadata"]["name"]) for r in regions]
        if spec_changed
        else []
    )


async def local_regions(kube: Kube, namespace: str) -> dict[str, Member]:
    """The namespace's NovaCronRegions as the federation sees them (the same function and
    cached objects a region's pass uses, so both compute the same topology)."""
    regions, clusters, nodes = await asyncio.gather(
        kube.cached_list("NovaCronRegion", namespace),
        kube.cached_list("NovaCronCluster", namespace),
        kube.cached_list("Node", ""),
    )
    return federated.local_regions(regions, clusters, nodes)


def _rv(obj: Obj) -> str:
    return str(obj["metadata"].get("resourceVersion", ""))


def tunnels_condition(spec: DWCPFederationSpec, regions: dict[str, Member]) -> Cond:
    """Whether every pair of local agents got its tunnel (a /30 of overlayCIDR each)."""
    kind = spec.tunnels.kind
    if kind == "none":
        return ok("TunnelsPlanned", "NoTunnels", "tunnels.kind none: agents measure and route")
    plan = agent_plan(spec, {n: m.local for n, m in regions.items()})
    if plan.needed > plan.capacity:
        return no(
            "TunnelsPlanned",
            "OverlayTooSmall",
            f"tunnels.overlayCIDR {spec.tunnels.overlay_cidr} holds {plan.capacity} tunnels "
            f"(a /30 each); the {len(plan.seats)} agents of the local members need "
            f"{plan.needed}: only the first {plan.capacity} are made",
        )
    return ok(
        "TunnelsPlanned",
        "Planned",
        f"{plan.needed} {kind} tunnels between {len(plan.seats)} agents of the local members "
        "(remote members are not tunnelled)",
    )


def unsupported(spec: DWCPFederationSpec) -> list[Cond]:
    """What the federation asks that the nodes do not do yet, field by field."""
    conds = []
    if spec.replication.mode == "sync":
        # The nodes honour it from topology.json (federation/config.py's plan): a VM write is
        # answered once syncFactor other regions hold it, else 504 outcome unknown. CEL keeps
        # syncFactor within 1..members-1, which is what the nodes accept.
        conds.append(
            ok(
                "ReplicationModeSupported",
                "Sync",
                f"replication.mode sync: a VM write is answered once "
                f"{spec.replication.sync_factor} other region(s) hold it (504, outcome "
                "unknown, when they do not answer in time)",
            )
        )
    else:
        conds.append(ok("ReplicationModeSupported", "Async", "replication.mode async"))
    cp = spec.conflict_policies
    # the model validated it with the nodes' own parser (conflict/policy.py), so they take
    # it; they read topology.json's conflictPolicies live and decide every VM again
    conds.append(
        ok(
            "ConflictPoliciesSupported",
            "AppliedByNodes",
            f"conflictPolicies (writes {cp.writes}, default {cp.default}, fallback "
            f"{cp.fallback}, {len(cp.rules)} rules, {len(cp.must_agree)} mustAgree groups) "
            "rendered into topology.json; the nodes apply a change without a restart",
        )
    )
    conds.append(
        no(
            "FailoverSupported",
            "NotImplemented",
            f"failover.mode {spec.failover.mode}: cross-region failover is not implemented "
            "yet; a region's own group fails over on its own (Raft)",
        )
    )
    return conds


def topology_condition() -> Cond:
    """Whether ``novacron node`` reads the federation file it is given (the same package
    version as this operator: the images are built together)."""
    from novacron_core.runtime.settings import NodeSettings

    if "federation_file" in NodeSettings.model_fields:
        return ok("TopologyConsumed", "NodesReadFederationFile", "the nodes read topology.json")
    return no(
        "TopologyConsumed",
        "NotImplemented",
        "topology.json is mounted in the member regions' node pods, but this version of "
        "novacron node does not read federation_file yet: no node replicates across regions",
    )


async def reconcile_federation(kube: Kube, key: Key, opts: Options) -> Follow:
    body = await kube.cached_get("DWCPFederation", key.namespace, key.name)
    every_region: Follow = [
        Key("NovaCronRegion", key.namespace, r["metadata"]["name"])
        for r in await kube.cached_list("NovaCronRegion", key.namespace)
    ]
    if body is None or body["metadata"].get("deletionTimestamp"):
        return every_region  # they unmount its topology
    owner = Owner.of(body)
    try:
        spec = DWCPFederationSpec.model_validate(body["spec"])
    except ValidationError as e:
        await invalid(kube, body, e)
        return []
    regions = await local_regions(kube, key.namespace)
    rejected: Rejected | None = None
    local = {name: m.local for name, m in regions.items()}
    desired = build_federation(owner, spec, local)
    live = await kube.cached_get("ConfigMap", key.namespace, topology_name(owner.name))
    try:
        await apply_and_prune(kube, owner, desired)
    except Rejected as e:
        rejected = e
    after = await kube.cached_get("ConfigMap", key.namespace, topology_name(owner.name))
    # the member regions compute the same topology from the same cache: when it changed,
    # their gateways and agents may need to roll
    # (compared by resourceVersion: the cache holds no ConfigMap data, and a no-op apply
    # leaves it as it was)
    moved = live is None or after is None or _rv(live) != _rv(after)
    members: list[MemberStatus] = []
    missing: list[str] = []
    mismatched: list[str] = []
    seen: set[str] = set()
    for m in spec.members:
        if m.region_ref is None:
            members.append(MemberStatus(name=m.name, local=False, ready=True, region=m.name))
            continue
        ref = m.region_ref.name
        if ref in seen:  # listed twice (an object stored before the CRD refused it): once
            continue
        seen.add(ref)
        found = regions.get(ref)
        if found is None:
            msg = f"NovaCronRegion {ref} does not exist in {key.namespace}"
            missing.append(f"{m.name} ({msg})")
            members.append(MemberStatus(name=m.name, local=True, ready=False, message=msg))
            continue
        lr, robj = found.local, found.obj
        up = bool(ready_of(robj))
        entry = MemberStatus(name=m.name, local=True, ready=up, region=lr.region_name)
        if not up:
            entry.message = f"NovaCronRegion {ref} is not Ready"
        if lr.region_name != m.name:
            mismatched.append(
                f"member {m.name} references NovaCronRegion {ref}, whose nodes use region "
                f"name {lr.region_name}"
            )
        members.append(entry)
    ready = sum(1 for m in members if m.ready)
    count = f"{ready}/{len(members)} members ready"
    waiting = [m.name for m in members if not m.ready]
    if not waiting:
        health = Health(ok("Ready", "AllMembersReady", count))
    else:
        health = progressing_health(
            "MembersProgressing", "waiting for " + ", ".join(waiting), count
        )
    cluster = await kube.cached_get("NovaCronCluster", key.namespace, spec.cluster_ref.name)
    if cluster is None:
        msg = f"NovaCronCluster {spec.cluster_ref.name} does not exist in {key.namespace}"
        health = health.degrade("ClusterNotFound", msg)
    if missing:
        health = health.degrade("RegionNotFound", "; ".join(missing))
    names = (
        ok("MemberNamesMatch", "Match", "every local member is named as its region's nodes")
        if not mismatched
        else no(
            "MemberNamesMatch",
            "NameMismatch",
            "; ".join(mismatched) + " (topology.json lists each member with that region)",
        )
    )
    health = health.with_extra(
        names, topology_condition(), tunnels_condition(spec, regions), *unsupported(spec)
    )
    if rejected is not None:
        health = health.degrade("ChildApplyFailed", rejected.message())
    typed = DWCPFederationStatus(members=members, ready_members=ready)
    status = body.get("status") or {}
    spec_changed = status.get("observedGeneration") != body["metadata"]["generation"]
    await write_status(kube, body, health, typed)
    if rejected is not None:
        raise rejected
    log.debug("federation %s: %s", topology_name(owner.name), count)
    # its member regions mount its topology (or stop): a change is theirs to apply
    return every_region if spec_changed or moved else []
