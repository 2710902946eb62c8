"""Informers: one kind in one namespace held in memory from a LIST and a WATCH, like
client-go's, so reconcile passes read children without a request; and the fingerprint by
which a hand edit is told from a controller's status write."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from novacron_operator.builders.common import OWNER_LABEL
from novacron_operator.kube.kinds import KINDS, ApiError, path

if TYPE_CHECKING:
    from novacron_operator.kube.client import Kube

Obj = dict[str, Any]
log = logging.getLogger("novacron.kube")


def _rv(obj: Obj) -> int:
    try:
        return int(obj["metadata"]["resourceVersion"])
    except (KeyError, TypeError, ValueError):
        return -1  # opaque in principle; an integer etcd revision in every real apiserver


# written by Kubernetes' own controllers on every object of a kind: not a drift to repair
# (the deployment controller's revision would otherwise cost each Deployment a second apply)
CONTROLLER_ANNOTATIONS = frozenset({"deployment.kubernetes.io/revision"})


def fingerprint(obj: Obj) -> str:
    """Everything a writer other than a status updater can change: the object less its
    status, resourceVersion and managedFields. A controller's status write leaves it as it
    was; a hand edit of any field (spec, data, labels, annotations) changes it."""
    meta = {
        k: v
        for k, v in obj.get("metadata", {}).items()
        if k not in ("resourceVersion", "managedFields")
    }
    notes = meta.get("annotations")
    if isinstance(notes, dict) and CONTROLLER_ANNOTATIONS & notes.keys():
        meta["annotations"] = {k: v for k, v in notes.items() if k not in CONTROLLER_ANNOTATIONS}
    rest = {k: v for k, v in obj.items() if k not in ("status", "metadata")}
    return hashlib.sha256(json.dumps([meta, rest], sort_keys=True).encode()).hexdigest()


# what passes never read from a cached copy, dropped to keep memory flat with hundreds of
# regions (the fingerprint is taken before): pod templates, ConfigMap/Secret payloads (no
# Secret data sits in the operator's memory), the pods' specs
SLIM: dict[str, tuple[str, ...]] = {
    "StatefulSet": ("spec.template",),
    "Deployment": ("spec.template",),
    "DaemonSet": ("spec.template",),
    "ConfigMap": ("data", "binaryData"),
    "Secret": ("data", "stringData"),
    "Pod": ("spec",),
    # a node's labels, taints and addresses say where agents run; the rest is heavy
    "Node": ("status.images", "status.conditions", "status.nodeInfo", "status.volumesInUse",
             "status.volumesAttached", "status.capacity", "status.allocatable",
             "metadata.annotations"),
}  # fmt: skip


def _slim(kind: str, obj: Obj) -> None:
    for dotted in SLIM.get(kind, ()):
        *parents, last = dotted.split(".")
        at: Any = obj
        for p in parents:
            at = at.get(p) if isinstance(at, dict) else None
        if isinstance(at, dict):
            at.pop(last, None)


OnEvent = Callable[[str, Obj], None]


class Informer:
    """One kind in one namespace, label-selected: LIST once, then WATCH from that
    resourceVersion (relisting on 410 Gone), keeping every object in memory, like
    client-go's informers. Reconcile passes read children from here instead of LISTing."""

    def __init__(
        self, kube: Kube, kind: str, namespace: str, selector: str, on_event: OnEvent | None
    ) -> None:
        self.kube, self.kind, self.namespace, self.selector = kube, kind, namespace, selector
        self.on_event = on_event
        self.items: dict[str, Obj] = {}
        self.prints: dict[str, str] = {}  # name -> fingerprint() of the full object
        # name -> resourceVersion of its deletion: our own write's result may reach put()
        # after the watch reported the object gone, and must not bring it back
        self.gone: dict[str, int] = {}
        self.by_owner: dict[str, set[str]] = {}  # owner-label value -> names
        self.synced = asyncio.Event()
        self.forbidden = False  # the API server answered 403: the cache stays empty

    def _index(self, obj: Obj, add: bool) -> None:
        owner = (obj["metadata"].get("labels") or {}).get(OWNER_LABEL)
        if owner is None:
            return
        names = self.by_owner.setdefault(owner, set())
        if add:
            names.add(obj["metadata"]["name"])
        else:
            names.discard(obj["metadata"]["name"])
            if not names:
                del self.by_owner[owner]

    def put(self, obj: Obj) -> bool:
        """Store ``obj`` unless we already hold a newer version (a write-through of our own
        apply may run ahead of the watch). Returns whether it was stored."""
        name = obj["metadata"]["name"]
        if name in self.gone:
            if _rv(obj) <= self.gone[name]:
                return False
            del self.gone[name]  # created again since
        old = self.items.get(name)
        if old is not None:
            if _rv(obj) >= 0 and _rv(old) > _rv(obj):
                return False
            self._index(old, False)
        self.prints[name] = fingerprint(obj)
        obj["metadata"].pop("managedFields", None)  # most of an object's bytes; unused
        _slim(self.kind, obj)
        self.items[name] = obj
        self._index(obj, True)
        return True

    def drop(self, name: str) -> Obj | None:
        old = self.items.pop(name, None)
        self.prints.pop(name, None)
        if old is not None:
            self._index(old, False)
        return old

    def owned(self, owner_uid: str) -> list[Obj]:
        return [self.items[n] for n in sorted(self.by_owner.get(owner_uid, ()))]

    def _notify(self, type_: str, obj: Obj) -> None:
        if self.on_event is not None:
            try:
                self.on_event(type_, obj)
            except Exception:
                log.exception("informer %s callback failed", self.kind)

    async def _list(self) -> str:
        params = {"labelSelector": self.selector} if self.selector else None
        got = await self.kube.request("GET", path(self.kind, self.namespace), params=params)
        fresh = {}
        for obj in got.get("items") or []:
            obj.setdefault("kind", self.kind)
            obj.setdefault("apiVersion", KINDS[self.kind][0])
            fresh[obj["metadata"]["name"]] = obj
        list_rv = _rv(got)
        for name in set(self.items) - set(fresh):
            self.gone[name] = list_rv
            old = self.drop(name)
            if old is not None:
                self.kube.forget(self.kind, self.namespace, name)
                self._notify("DELETED", old)
        for obj in fresh.values():
            self.put(obj)
            self._notify("ADDED", obj)
        self.forbidden = False
        return str(got.get("metadata", {}).get("resourceVersion", ""))

    async def _watch(self, rv: str) -> str | None:
        """Follow the watch until the server ends it; the resourceVersion to resume from,
        or None when it expired (410) and a relist is needed."""
        params = {"watch": "1", "resourceVersion": rv, "allowWatchBookmarks": "true",
                  "timeoutSeconds": "290"}  # fmt: skip
        if self.selector:
            params["labelSelector"] = self.selector
        headers = self.kube.config.auth_header()
        url = self.kube.config.server + path(self.kind, self.namespace)
        async with self.kube.watch_session().get(url, params=params, headers=headers) as resp:
            if resp.status == 410:
                return None
            if resp.status >= 400:
                raise ApiError(resp.status, await resp.text())
            buf = b""
            async for chunk in resp.content.iter_any():
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    if not line.strip():
                        continue
                    ev = json.loads(line)
                    type_, obj = ev.get("type"), ev.get("object") or {}
                    if type_ == "ERROR":
                        if obj.get("code") == 410:
                            return None
                        raise ApiError(int(obj.get("code") or 500), json.dumps(obj))
                    rv = str(obj.get("metadata", {}).get("resourceVersion", rv))
                    if type_ == "BOOKMARK":
                        continue
                    name = obj["metadata"]["name"]
                    if type_ == "DELETED":
                        self.drop(name)
                        self.gone[name] = _rv(obj)
                        self.kube.forget(self.kind, self.namespace, name)
                    else:
                        self.put(obj)
                    self._notify(str(type_), obj)
        return rv

    async def run(self) -> None:
        rv: str | None = None
        while True:
            try:
                if rv is None:
                    rv = await self._list()
                    self.synced.set()
                rv = await self._watch(rv)
            except asyncio.CancelledError:
                raise
            except ApiError as e:
                if e.status != 403:
                    log.warning("informer %s/%s: %s; relisting", self.namespace, self.kind, e)
                    rv = None
                    await asyncio.sleep(1.0)
                    continue
                # not allowed: say so once, count as synced (empty) so passes go on
                # without it, and look again now and then in case the rights come
                if not self.forbidden:
                    log.error("informer %s/%s: forbidden: %s", self.namespace, self.kind, e)
                self.forbidden = True
                self.synced.set()
                rv = None
                await asyncio.sleep(60.0)
            except Exception as e:
                log.warning("informer %s/%s: %s; relisting", self.namespace, self.kind, e)
                rv = None
                await asyncio.sleep(1.0)
