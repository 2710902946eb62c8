"""Thin kopf handlers: they only turn watch events and timers into queue keys.

Kopf gives us watching, resumable streams and timers; the decisions live in reconcile.py.
No on.create/on.update (change-based, can run twice, miss drift): every trigger, whatever
it says, just asks for one fresh level-based pass of the owning resource.
"""

from __future__ import annotations

from typing import Any

import kopf

from novacron_operator import GROUP, VERSION
from novacron_operator.builders.common import OWNER_LABEL
from novacron_operator.kube import KINDS, OWNED, Kube
from novacron_operator.reconcile import RECONCILERS, Key
from novacron_operator.worker import WorkQueue

PARENTS = {kind: KINDS[kind][1] for kind in RECONCILERS}


def register(
    registry: kopf.OperatorRegistry, queue: WorkQueue, resync: float, kube: Kube | None = None
) -> None:
    for kind, plural in PARENTS.items():

        def poke(body: Any, _kind: str = kind, **_: Any) -> None:
            meta = body.get("metadata", {})
            if meta.get("namespace") and meta.get("name"):
                queue.add(Key(_kind, meta["namespace"], meta["name"]))

        kopf.on.event(GROUP, VERSION, plural, registry=registry)(poke)
        # the timer is the level-based safety net: it repairs drift no event told us about
        kopf.timer(GROUP, VERSION, plural, interval=resync, registry=registry)(poke)

    def child(body: Any, event: Any, **_: Any) -> None:
        meta = body.get("metadata", {})
        if kube is not None:
            gone = (event or {}).get("type") == "DELETED"
            rv = None if gone else meta.get("resourceVersion")
            kube.observe(body.get("kind", ""), meta.get("namespace", ""), meta.get("name", ""), rv)
        for ref in meta.get("ownerReferences") or []:
            if ref.get("controller") and ref.get("kind") in PARENTS:
                queue.add(Key(ref["kind"], meta["namespace"], ref["name"]))

    for kind in OWNED:
        api_version, plural = KINDS[kind]
        group, _, version = api_version.rpartition("/")
        # the label selector keeps unrelated ConfigMaps/Secrets out of memory entirely
        kopf.on.event(
            group, version, plural, labels={OWNER_LABEL: kopf.PRESENT}, registry=registry
        )(child)
