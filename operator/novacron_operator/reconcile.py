"""One level-based reconcile pass per resource: read the world, build, apply, prune, report.

Every pass starts from scratch (no memory of previous passes), so a crash at any point is
repaired by the next pass, and running a pass twice changes nothing. This module holds what
every pass shares (work keys, applying and pruning children, writing status); the passes
themselves are ``regions.py`` and ``parents.py``.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

from novacron_operator.admin import NodeClients
from novacron_operator.builders import Owner
from novacron_operator.failpoints import failpoint
from novacron_operator.kube import OPTIONAL_OWNED, OWNED, ApiError, Kube, path
from novacron_operator.schema import CommonStatus
from novacron_operator.status import Health, conditions, events, no, now_rfc3339

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


async def set_finalizer(kube: Kube, body: Obj, finalizer: str, present: bool) -> None:
    if (finalizer in (body["metadata"].get("finalizers") or [])) == present:
        return
    # the list is replaced whole, guarded by resourceVersion: take both from the server,
    # not from the informer's copy, which may lag
    fresh = await kube.get(body["kind"], body["metadata"]["namespace"], body["metadata"]["name"])
    if fresh is None:
        return
    meta = fresh["metadata"]
    current = list(meta.get("finalizers") or [])
    if (finalizer in current) == present:
        return
    wanted = [*current, finalizer] if present else [f for f in current if f != finalizer]
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


async def write_status(kube: Kube, body: Obj, health: Health, status: CommonStatus) -> bool:
    """Patch status only when it changes (a no-op write would wake every watcher): the
    kind's status model (the CRD's schema source) with ``health`` as its conditions; the
    fields set in ``status``, None included (it clears them), are written. Posts an Event
    for each condition that turns bad (Warning) and when Ready turns True. Returns whether
    Ready changed."""
    meta, old = body["metadata"], body.get("status") or {}
    old_conds = old.get("conditions") or []
    conds = conditions(old_conds, health, meta["generation"], now_rfc3339())
    typed = status.model_copy(
        update={"observed_generation": meta["generation"], "conditions": conds}
    )
    new = typed.model_dump(by_alias=True, exclude_unset=True, mode="json")
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
    health = Health(no("Ready", "InvalidSpec", msg)).degrade("InvalidSpec", msg)
    await write_status(kube, body, health, CommonStatus())


async def annotate(kube: Kube, body: Obj, annotations: dict[str, str]) -> None:
    meta = body["metadata"]
    patch = {"metadata": {"annotations": annotations}}
    await kube.write(
        "PATCH",
        path(body["kind"], meta["namespace"], meta["name"]),
        patch,
        "application/merge-patch+json",
    )
