"""One level-based reconcile pass per resource: read the world, build, apply, prune, report.

Every pass starts from scratch (no memory of previous passes), so a crash at any point is
repaired by the next pass, and running a pass twice changes nothing.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from novacron_operator import API_VERSION
from novacron_operator.builders import Owner, build_ca_secret, build_cluster, build_federation
from novacron_operator.builders.cluster import ca_secret_name
from novacron_operator.builders.common import OWNER_LABEL, selector_labels
from novacron_operator.builders.region import RegionContext, agent_names, build_region
from novacron_operator.failpoints import failpoint
from novacron_operator.kube import OPTIONAL_OWNED, OWNED, ApiError, Kube, path
from novacron_operator.models import DWCPFederationSpec, NovaCronClusterSpec, NovaCronRegionSpec
from novacron_operator.status import (
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
class Options:
    agent_namespace: str | None = None


AGENT_FINALIZER = "novacron.io/agents"
AGENT_KINDS = ("DaemonSet", "ConfigMap", "ServiceAccount")


async def cleanup_agents(kube: Kube, owner: Owner, ns: str, keep: set[tuple[str, str]]) -> None:
    """Prune agent objects in the agent namespace (no owner references can reach there)."""
    for kind in AGENT_KINDS:
        for existing in await kube.list(kind, ns, f"{OWNER_LABEL}={owner.uid}"):
            if (kind, existing["metadata"]["name"]) not in keep:
                await kube.delete(kind, ns, existing["metadata"]["name"])


async def set_finalizer(kube: Kube, body: Obj, present: bool) -> None:
    meta = body["metadata"]
    current = list(meta.get("finalizers") or [])
    if (AGENT_FINALIZER in current) == present:
        return
    wanted = (
        [*current, AGENT_FINALIZER] if present else [f for f in current if f != AGENT_FINALIZER]
    )
    patch = {"metadata": {"finalizers": wanted, "resourceVersion": meta["resourceVersion"]}}
    await kube.request(
        "PATCH",
        path(body["kind"], meta["namespace"], meta["name"]),
        patch,
        "application/merge-patch+json",
    )


async def apply_and_prune(
    kube: Kube, owner: Owner, desired: list[Obj], keep: frozenset[tuple[str, str]] = frozenset()
) -> None:
    # independent objects: apply them concurrently (one pass is latency-bound, not CPU-bound)
    half = len(desired) // 2
    await asyncio.gather(*(kube.apply_if_changed(o) for o in desired[:half]))
    failpoint("mid-apply")
    await asyncio.gather(*(kube.apply_if_changed(o) for o in desired[half:]))
    failpoint("after-apply")
    wanted = {(o["kind"], o["metadata"]["name"]) for o in desired} | keep
    kinds = list(OWNED)
    for kind, gv in OPTIONAL_OWNED.items():
        if await kube.api_exists(gv):
            kinds.append(kind)
    selector = f"{OWNER_LABEL}={owner.uid}"
    listed = await asyncio.gather(*(kube.list(k, owner.namespace, selector) for k in kinds))
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
        await kube.event(body, "Normal" if now else "Warning", reason, health.message)
        return True
    return False


async def invalid(kube: Kube, body: Obj, err: Exception) -> None:
    await write_status(kube, body, Health(False, False, True, "InvalidSpec", str(err)[:500]), {})


async def roll_one_pod(kube: Kube, owner: Owner, sts: Obj) -> str | None:
    """OnDelete rollout, one pod per pass, only when every pod is ready (highest ordinal first:
    the sequencer moves leadership off a pod before it goes once the admin API lands)."""
    s = sts.get("status") or {}
    revision = s.get("updateRevision")
    if not revision or s.get("readyReplicas", 0) < sts["spec"]["replicas"]:
        return None
    selector = ",".join(f"{k}={v}" for k, v in selector_labels(owner, "node").items())
    pods = await kube.list("Pod", owner.namespace, selector)
    stale = [
        p
        for p in pods
        if p["metadata"].get("labels", {}).get("controller-revision-hash") != revision
        and not p["metadata"].get("deletionTimestamp")
    ]
    # the pods themselves, not the StatefulSet's lagging status, say whether all are up
    if not stale or len(pods) < sts["spec"]["replicas"] or not all(map(pod_ready, pods)):
        return None
    victim = max(stale, key=lambda p: int(p["metadata"]["name"].rsplit("-", 1)[1]))
    await kube.delete("Pod", owner.namespace, victim["metadata"]["name"])
    failpoint("after-pod-delete")
    await kube.event(
        {"apiVersion": API_VERSION, "kind": owner.kind, "metadata": _meta(owner)},
        "Normal",
        "RollingPod",
        f"replacing {victim['metadata']['name']} with revision {revision}",
    )
    return str(victim["metadata"]["name"])


def pod_ready(pod: Obj) -> bool:
    if pod["metadata"].get("deletionTimestamp"):
        return False
    conds = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conds)


def _meta(owner: Owner) -> Obj:
    return {"name": owner.name, "namespace": owner.namespace, "uid": owner.uid}


async def reconcile_region(kube: Kube, key: Key, opts: Options) -> list[Key]:
    body = await kube.get("NovaCronRegion", key.namespace, key.name)
    if body is None:
        return []
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
    cluster = await kube.get("NovaCronCluster", key.namespace, spec.cluster_ref.name)
    if cluster is None:
        health = Health(False, False, True, "ClusterNotFound", f"{spec.cluster_ref.name} missing")
        await write_status(kube, body, health, {})
        return []
    cspec = NovaCronClusterSpec.model_validate(cluster["spec"])
    monitor = await kube.api_exists(OPTIONAL_OWNED["ServiceMonitor"])
    ctx = RegionContext(cspec, spec.cluster_ref.name, monitor, agent_ns)
    desired = build_region(owner, spec, ctx)
    await apply_and_prune(
        kube, owner, [o for o in desired if o["metadata"]["namespace"] == key.namespace]
    )
    if agent_ns:
        remote = [o for o in desired if o["metadata"]["namespace"] == agent_ns]
        for obj in remote:
            await kube.apply(obj)
        await cleanup_agents(
            kube, owner, agent_ns, {(o["kind"], o["metadata"]["name"]) for o in remote}
        )
    ds_ns, ds_name = agent_names(owner, ctx)
    sts, ds, deploy = await asyncio.gather(
        kube.get("StatefulSet", key.namespace, owner.name),
        kube.get("DaemonSet", ds_ns, ds_name),
        kube.get("Deployment", key.namespace, f"{owner.name}-gateway"),
    )
    if sts is not None:
        await roll_one_pod(kube, owner, sts)
    health = workload_health(spec.replicas, sts, ds, deploy, spec.agent.enabled)
    st = (sts or {}).get("status") or {}
    extra = {
        "replicas": st.get("replicas", 0),
        "readyReplicas": st.get("readyReplicas", 0),
        "selector": ",".join(f"{k}={v}" for k, v in selector_labels(owner, "node").items()),
        "protocol": spec.protocol,
    }
    changed = await write_status(kube, body, health, extra)
    if not changed:
        return []
    feds = await kube.list("DWCPFederation", key.namespace)
    parents = [Key("DWCPFederation", key.namespace, f["metadata"]["name"]) for f in feds]
    return [*parents, Key("NovaCronCluster", key.namespace, spec.cluster_ref.name)]


async def reconcile_cluster(kube: Kube, key: Key, opts: Options) -> list[Key]:
    body = await kube.get("NovaCronCluster", key.namespace, key.name)
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
        for r in await kube.list("NovaCronRegion", key.namespace)
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


async def reconcile_federation(kube: Kube, key: Key, opts: Options) -> list[Key]:
    body = await kube.get("DWCPFederation", key.namespace, key.name)
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
        region = await kube.get("NovaCronRegion", key.namespace, m.region_ref.name)
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
