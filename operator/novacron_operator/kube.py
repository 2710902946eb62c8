"""A small async Kubernetes REST client: server-side apply, label-selected lists, pruning.

Why not the official client: kopf's docs measure it at most of a small operator's memory,
and all we need is a dozen REST verbs over aiohttp, which kopf already loads. One field
manager owns every field we set, so SSA never fights itself across restarts or replicas.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import json
import logging
import os
import ssl
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from prometheus_client import Histogram

from novacron_operator import FIELD_MANAGER
from novacron_operator.builders.common import OWNER_LABEL

Obj = dict[str, Any]
log = logging.getLogger("novacron.kube")
SA_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")

# kind -> (apiVersion, plural); every kind the operator reads or writes
KINDS: dict[str, tuple[str, str]] = {
    "ConfigMap": ("v1", "configmaps"),
    "Secret": ("v1", "secrets"),
    "Service": ("v1", "services"),
    "ServiceAccount": ("v1", "serviceaccounts"),
    "Pod": ("v1", "pods"),
    "PersistentVolumeClaim": ("v1", "persistentvolumeclaims"),
    "Event": ("v1", "events"),
    "StatefulSet": ("apps/v1", "statefulsets"),
    "DaemonSet": ("apps/v1", "daemonsets"),
    "Deployment": ("apps/v1", "deployments"),
    "PodDisruptionBudget": ("policy/v1", "poddisruptionbudgets"),
    "HorizontalPodAutoscaler": ("autoscaling/v2", "horizontalpodautoscalers"),
    "NetworkPolicy": ("networking.k8s.io/v1", "networkpolicies"),
    "Lease": ("coordination.k8s.io/v1", "leases"),
    "ServiceMonitor": ("monitoring.coreos.com/v1", "servicemonitors"),
    "Certificate": ("cert-manager.io/v1", "certificates"),
    "NovaCronCluster": ("novacron.io/v1alpha1", "novacronclusters"),
    "NovaCronRegion": ("novacron.io/v1alpha1", "novacronregions"),
    "DWCPFederation": ("novacron.io/v1alpha1", "dwcpfederations"),
}
# children we own and therefore prune; optional kinds only when their API exists
OWNED = [
    "ConfigMap", "Secret", "Service", "ServiceAccount", "StatefulSet", "DaemonSet",
    "Deployment", "PodDisruptionBudget", "HorizontalPodAutoscaler", "NetworkPolicy",
]  # fmt: skip
OPTIONAL_OWNED = {"ServiceMonitor": "monitoring.coreos.com/v1", "Certificate": "cert-manager.io/v1"}


class ApiError(Exception):
    def __init__(self, status: int, body: str) -> None:
        self.status = status
        self.body = body
        try:
            self.message = str(json.loads(body).get("message", body))
        except ValueError:
            self.message = body
        super().__init__(f"{status}: {self.message}")


def path(kind: str, namespace: str | None, name: str | None = None, sub: str = "") -> str:
    api_version, plural = KINDS[kind]
    base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    out = f"{base}/namespaces/{namespace}/{plural}" if namespace else f"{base}/{plural}"
    if name:
        out += f"/{name}"
    return out + (f"/{sub}" if sub else "")


@dataclass
class Config:
    server: str
    ssl: ssl.SSLContext
    token: str | None = None
    token_file: Path | None = None
    # raw PEM kept so kopf's watcher logs in with exactly the same identity
    ca_pem: bytes | None = None
    cert_pem: bytes | None = None
    key_pem: bytes | None = None

    def current_token(self) -> str | None:
        if self.token_file is not None:
            return self.token_file.read_text().strip()  # projected tokens rotate
        return self.token

    def auth_header(self) -> dict[str, str]:
        token = self.current_token()
        return {"Authorization": f"Bearer {token}"} if token else {}


def _materialise(user: Obj, key: str, d: Path) -> str | None:
    if user.get(f"{key}-data"):
        p = d / key
        p.write_bytes(base64.b64decode(user[f"{key}-data"]))
        return str(p)
    value = user.get(key)
    return str(value) if value else None


def load_config(kubeconfig: str | None = None) -> Config:
    """From KUBECONFIG (client certs or token) or, inside a pod, the mounted SA token."""
    kubeconfig = kubeconfig or os.environ.get("KUBECONFIG")
    if not kubeconfig and (SA_DIR / "token").exists():
        host, port = os.environ["KUBERNETES_SERVICE_HOST"], os.environ["KUBERNETES_SERVICE_PORT"]
        ctx = ssl.create_default_context(cafile=str(SA_DIR / "ca.crt"))
        ca_pem = (SA_DIR / "ca.crt").read_bytes()
        return Config(f"https://{host}:{port}", ctx, token_file=SA_DIR / "token", ca_pem=ca_pem)
    doc = yaml.safe_load(Path(kubeconfig or Path.home() / ".kube/config").read_text())
    current = next(c for c in doc["contexts"] if c["name"] == doc["current-context"])["context"]
    cluster = next(c for c in doc["clusters"] if c["name"] == current["cluster"])["cluster"]
    user = next(u for u in doc["users"] if u["name"] == current["user"])["user"]
    with tempfile.TemporaryDirectory() as tmp:  # *-data fields only need to exist while loading
        d = Path(tmp)
        ca = _materialise(cluster, "certificate-authority", d)
        ctx = ssl.create_default_context(cafile=ca)
        cert, key = _materialise(user, "client-certificate", d), _materialise(user, "client-key", d)
        if cert and key:
            ctx.load_cert_chain(cert, key)
        pems = [Path(p).read_bytes() if p else None for p in (ca, cert, key)]
    token_file = Path(user["tokenFile"]) if user.get("tokenFile") else None
    return Config(
        cluster["server"],
        ctx,
        token=user.get("token"),
        token_file=token_file,
        ca_pem=pems[0],
        cert_pem=pems[1],
        key_pem=pems[2],
    )


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


REQUESTS = Histogram(
    "novacron_operator_api_request_seconds",
    "API server requests the operator's own client made (not kopf's watches)",
    ["verb", "resource"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
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
}


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
            except Exception as e:
                log.warning("informer %s/%s: %s; relisting", self.namespace, self.kind, e)
                rv = None
                await asyncio.sleep(1.0)


class Kube:
    def __init__(self, config: Config) -> None:
        self.config = config
        self._session: aiohttp.ClientSession | None = None
        self._watch_session: aiohttp.ClientSession | None = None
        self.informers: dict[tuple[str, str], Informer] = {}
        self._events: set[asyncio.Task[None]] = set()
        self._discovery: dict[str, tuple[bool, float]] = {}
        # skip-unchanged cache: (kind, ns, name) -> (digest of the manifest we applied,
        # fingerprint of the object that apply produced). Only kinds an informer follows
        # qualify: elsewhere nobody would tell us about a hand edit.
        self.applied: dict[tuple[str, str, str], tuple[str, str]] = {}

    async def __aenter__(self) -> Kube:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._events:  # Events still being posted get a moment
            await asyncio.wait(self._events, timeout=5)
        for s in (self._session, self._watch_session):
            if s is not None:
                await s.close()
        self._session = self._watch_session = None

    def watch_session(self) -> aiohttp.ClientSession:
        """Watches hold their connection for minutes: their own pool, no total timeout."""
        if self._watch_session is None:
            self._watch_session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self.config.ssl, limit=0),
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=330),
            )
        return self._watch_session

    def inform(
        self, kind: str, namespace: str, selector: str = "", on_event: OnEvent | None = None
    ) -> Informer:
        """Follow ``kind`` in ``namespace`` (start it with ``run_informers``)."""
        inf = Informer(self, kind, namespace, selector, on_event)
        self.informers[(kind, namespace)] = inf
        return inf

    async def run_informers(self) -> None:
        async with asyncio.TaskGroup() as tg:
            for inf in self.informers.values():
                tg.create_task(inf.run())

    async def wait_synced(self) -> None:
        for inf in self.informers.values():
            await inf.synced.wait()

    def informer(self, kind: str, namespace: str | None) -> Informer | None:
        inf = self.informers.get((kind, namespace or ""))
        return inf if inf is not None and inf.synced.is_set() else None

    async def cached_get(self, kind: str, namespace: str, name: str) -> Obj | None:
        """From the informer when one follows the kind there (less what ``SLIM`` drops),
        else from the API."""
        inf = self.informer(kind, namespace)
        if inf is None:
            return await self.get(kind, namespace, name)
        return inf.items.get(name)

    async def owned(self, kind: str, namespace: str, owner_uid: str) -> list[Obj]:
        """The objects labelled as ``owner_uid``'s children."""
        inf = self.informer(kind, namespace)
        if inf is None:
            return await self.list(kind, namespace, f"{OWNER_LABEL}={owner_uid}")
        return inf.owned(owner_uid)

    async def cached_list(self, kind: str, namespace: str) -> list[Obj]:
        inf = self.informer(kind, namespace)
        if inf is None:
            return await self.list(kind, namespace)
        return [inf.items[n] for n in sorted(inf.items)]

    def remember(self, obj: Obj) -> None:
        """Our own write's result, into the informer (read your writes)."""
        meta = obj.get("metadata") or {}
        inf = self.informer(str(obj.get("kind", "")), meta.get("namespace"))
        if inf is not None and meta.get("name"):
            inf.put(obj)

    async def write(self, method: str, url: str, body: Any, content_type: str) -> Obj:
        """A write whose result the informers should hold at once."""
        result = await self.request(method, url, body, content_type)
        self.remember(result)
        return result

    def forget(self, kind: str, namespace: str, name: str) -> None:
        self.applied.pop((kind, namespace, name), None)

    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self.config.ssl, limit=20),
                timeout=aiohttp.ClientTimeout(total=30),
            )
        return self._session

    async def request(
        self,
        method: str,
        url: str,
        body: Any = None,
        content_type: str = "application/json",
        params: dict[str, str] | None = None,
    ) -> Obj:
        headers = {"Content-Type": content_type, **self.config.auth_header()}
        data = None if body is None else json.dumps(body)
        parts = url.split("?", 1)[0].rstrip("/").split("/")
        # .../namespaces/NS/PLURAL[/NAME[/SUB]]: the plural is after the namespace
        resource = parts[parts.index("namespaces") + 2] if "namespaces" in parts[:-2] else parts[-1]
        verb = "APPLY" if content_type == "application/apply-patch+yaml" else method
        timer = REQUESTS.labels(verb, resource).time()
        with timer:
            return await self._request(method, url, data, headers, params)

    async def _request(
        self,
        method: str,
        url: str,
        data: str | None,
        headers: dict[str, str],
        params: dict[str, str] | None,
    ) -> Obj:
        for attempt in range(4):
            async with self.session().request(
                method, self.config.server + url, data=data, headers=headers, params=params
            ) as resp:
                text = await resp.text()
                if resp.status in (429, 503) and attempt < 3:  # throttled or storage warming up
                    await asyncio.sleep(min(float(resp.headers.get("Retry-After", 1)), 1.0))
                    continue
                if resp.status >= 400:
                    raise ApiError(resp.status, text)
                result: Obj = json.loads(text) if text else {}
                return result
        raise AssertionError("unreachable")

    async def get(self, kind: str, namespace: str | None, name: str) -> Obj | None:
        try:
            return await self.request("GET", path(kind, namespace, name))
        except ApiError as e:
            if e.status == 404:
                return None
            raise

    async def list(self, kind: str, namespace: str | None, selector: str = "") -> list[Obj]:
        params = {"labelSelector": selector} if selector else None
        items: list[Obj] = (await self.request("GET", path(kind, namespace), params=params))[
            "items"
        ]
        return items

    async def apply(self, obj: Obj) -> Obj:
        """Server-side apply under our field manager; force takes over fields a human set."""
        meta = obj["metadata"]
        return await self.request(
            "PATCH",
            path(obj["kind"], meta.get("namespace"), meta["name"]),
            obj,
            "application/apply-patch+yaml",
            {"fieldManager": FIELD_MANAGER, "force": "true"},
        )

    async def apply_if_changed(self, obj: Obj) -> bool:
        """Apply unless this exact manifest is what we last applied and the informer's copy
        of the object is still what that apply produced, save for status (so a controller's
        status write costs no request, a hand edit anywhere else is repaired). Returns
        whether a request was made."""
        meta = obj["metadata"]
        key = (obj["kind"], meta["namespace"], meta["name"])
        digest = hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()
        inf = self.informer(obj["kind"], meta["namespace"])
        cached = self.applied.get(key)
        if (
            inf is not None
            and cached is not None
            and cached[0] == digest
            and inf.prints.get(meta["name"]) == cached[1]
        ):
            return False
        result = await self.apply(obj)
        if inf is not None:
            self.applied[key] = (digest, fingerprint(result))
            inf.put(result)  # read your own write before the watch brings it
        return True

    async def create(self, obj: Obj) -> Obj:
        meta = obj["metadata"]
        return await self.request("POST", path(obj["kind"], meta.get("namespace")), obj)

    async def replace(self, obj: Obj) -> Obj:
        meta = obj["metadata"]
        return await self.request(
            "PUT", path(obj["kind"], meta.get("namespace"), meta["name"]), obj
        )

    async def delete(
        self, kind: str, namespace: str, name: str, propagation: str = "Background"
    ) -> bool:
        """Delete; ``propagation="Orphan"`` leaves the object's dependents (a StatefulSet's
        pods) in place."""
        try:
            await self.request(
                "DELETE", path(kind, namespace, name), {"propagationPolicy": propagation}
            )
            return True
        except ApiError as e:
            if e.status == 404:
                return False
            raise

    async def patch_status(self, kind: str, namespace: str, name: str, status: Obj) -> Obj:
        return await self.write(
            "PATCH",
            path(kind, namespace, name, "status"),
            {"status": status},
            "application/merge-patch+json",
        )

    async def api_exists(self, group_version: str, ttl: float = 60.0) -> bool:
        """Discovery, cached for a minute: optional APIs (ServiceMonitor) rarely come and go."""
        now = time.monotonic()
        hit = self._discovery.get(group_version)
        if hit is not None and now - hit[1] < ttl:
            return hit[0]
        try:
            await self.request("GET", f"/apis/{group_version}")
            found = True
        except ApiError as e:
            if e.status not in (403, 404):
                raise
            found = False
        self._discovery[group_version] = (found, now)
        return found

    def event_soon(self, owner: Obj, type_: str, reason: str, message: str) -> None:
        """Post an Event in the background: a lost Event loses no state."""

        async def post() -> None:
            try:
                await self.event(owner, type_, reason, message)
            except (ApiError, aiohttp.ClientError, TimeoutError) as e:
                log.warning("event %s for %s: %s", reason, owner["metadata"]["name"], e)

        task = asyncio.get_running_loop().create_task(post())
        self._events.add(task)
        task.add_done_callback(self._events.discard)

    async def event(self, owner: Obj, type_: str, reason: str, message: str) -> None:
        meta = owner["metadata"]
        now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        await self.create(
            {
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
                "involvedObject": {
                    "apiVersion": owner["apiVersion"],
                    "kind": owner["kind"],
                    "name": meta["name"],
                    "namespace": meta["namespace"],
                    "uid": meta["uid"],
                },
                "type": type_,
                "reason": reason,
                "message": message[:1000],
                "firstTimestamp": now,
                "lastTimestamp": now,
                "count": 1,
                "source": {"component": FIELD_MANAGER},
                "reportingComponent": FIELD_MANAGER,
            }
        )
