"""Thin kopf handlers: they only turn watch events and timers into queue keys.

Kopf gives us watching, resumable streams and timers; the decisions live in reconcile.py.
No on.create/on.update (change-based, can run twice, miss drift): every trigger, whatever
it says, just asks for one fresh level-based pass of the owning resource.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import kopf

from novacron_operator import GROUP, VERSION
from novacron_operator.builders.common import OWNER_LABEL, REGION_LABEL
from novacron_operator.kube import KINDS, OWNED, Kube
from novacron_operator.reconcile import Key
from novacron_operator.reconcilers import RECONCILERS
from novacron_operator.regions import AGENT_KINDS
from novacron_operator.worker import WorkQueue

PARENTS = {kind: KINDS[kind][1] for kind in RECONCILERS}


def register(
    registry: kopf.OperatorRegistry,
    queue: WorkQueue,
    kube: Kube | None = None,
    namespaces: tuple[str, ...] = (),
    coalesce: float = 0.0,
    agent_namespace: str | None = None,
) -> None:
    for kind, plural in PARENTS.items():

        def poke(body: Any, _kind: str = kind, **_: Any) -> None:
            meta = body.get("metadata", {})
            if meta.get("namespace") and meta.get("name"):
                queue.add(Key(_kind, meta["namespace"], meta["name"]))

        kopf.on.event(GROUP, VERSION, plural, registry=registry)(poke)
        # no kopf.timer for the periodic resync (``resync`` below): kopf puts a finalizer on
        # every resource a timer follows, so with the operator stopped (uninstalled, or
        # scaled to 0) a delete or a GitOps prune would hang; kopf removes that finalizer
        # from resources an older operator marked

    def parent(type_: str, body: Any) -> None:
        meta = body.get("metadata", {})
        queue.add(Key(body.get("kind", ""), meta["namespace"], meta["name"]))

    def child(type_: str, body: Any) -> None:
        meta = body.get("metadata", {})
        for ref in meta.get("ownerReferences") or []:
            if ref.get("controller") and ref.get("kind") in PARENTS:
                queue.add_soon(Key(ref["kind"], meta["namespace"], ref["name"]), coalesce)

    if kube is None:
        return
    # our own informers (kube/informer.py), not kopf watches, follow the children: a reconcile pass
    # reads them from memory instead of GETting and LISTing every owned kind, and their
    # events ask for a pass of the owning resource. The label selector keeps unrelated
    # ConfigMaps/Secrets out of memory entirely.
    for ns in namespaces:
        # the parents too: passes read them from memory. Their events also ask for a pass,
        # beside kopf's: a pass kopf's event started may read our copy before our own watch
        # has the change, and this event then brings the pass that sees it
        for kind in PARENTS:
            kube.inform(kind, ns, "", parent)
        for kind in OWNED:
            kube.inform(kind, ns, OWNER_LABEL, child)
        # the region's node pods, for the day-2 sequencer (their events need no pass:
        # the StatefulSet's status follows them)
        kube.inform("Pod", ns, OWNER_LABEL)
    if agent_namespace and agent_namespace not in namespaces:
        # a region's agents live there (no owner reference reaches across namespaces: the
        # owner label names the region, by uid)
        def agent_child(type_: str, body: Any) -> None:
            uid = (body.get("metadata", {}).get("labels") or {}).get(OWNER_LABEL)
            for ns in namespaces:
                for obj in kube.informers[("NovaCronRegion", ns)].items.values():
                    if obj["metadata"].get("uid") == uid:
                        queue.add_soon(Key("NovaCronRegion", ns, obj["metadata"]["name"]), coalesce)

        for kind in AGENT_KINDS:
            kube.inform(kind, agent_namespace, OWNER_LABEL, agent_child)
    # the Kubernetes nodes (cluster-wide: agents run on them, topology.json lists their
    # addresses); only a change of what places agents asks for passes, not heartbeats
    placed: dict[str, str] = {}

    def node(type_: str, body: Any) -> None:
        meta = body.get("metadata", {})
        name = meta.get("name", "")
        digest = "" if type_ == "DELETED" else placement(body)
        if placed.get(name) == digest:
            return
        if digest:
            placed[name] = digest
        else:
            placed.pop(name, None)
        for ns in namespaces:
            for obj in list(kube.informers[("NovaCronRegion", ns)].items.values()):
                queue.add_soon(Key("NovaCronRegion", ns, obj["metadata"]["name"]), coalesce)

    kube.inform("Node", "", REGION_LABEL, node)


def placement(node: Any) -> str:
    """What decides whether and where a region's agents run on a node."""
    meta, spec, status = node.get("metadata", {}), node.get("spec") or {}, node.get("status") or {}
    return json.dumps(
        [meta.get("labels"), spec.get("taints"), status.get("addresses")], sort_keys=True
    )


async def resync(kube: Kube, queue: WorkQueue, namespaces: tuple[str, ...], period: float) -> None:
    """The level-based safety net: every ``period`` seconds, a pass of every resource (from
    the informers' memory), repairing drift no event told us about. Followers' queues drop
    the keys."""
    while True:
        await asyncio.sleep(period)
        for ns in namespaces:
            for kind in PARENTS:
                for obj in await kube.cached_list(kind, ns):
                    queue.add(Key(kind, ns, obj["metadata"]["name"]))
