"""A small async Kubernetes REST client: server-side apply, label-selected lists, pruning.

Why not the official client: kopf's docs measure it at most of a small operator's memory,
and all we need is a dozen REST verbs over aiohttp, which kopf already loads. One field
manager owns every field we set, so SSA never fights itself across restarts or replicas.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import logging
import time
from typing import Any

import aiohttp
from prometheus_client import Histogram

from novacron_operator import FIELD_MANAGER
from novacron_operator.builders.common import OWNER_LABEL
from novacron_operator.kube.config import Config
from novacron_operator.kube.informer import Informer, OnEvent, fingerprint
from novacron_operator.kube.kinds import ApiError, path

Obj = dict[str, Any]
log = logging.getLogger("novacron.kube")

REQUESTS = Histogram(
    "novacron_operator_api_request_seconds",
    "API server requests the operator's own client made (not kopf's watches)",
    ["verb", "resource"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)


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
        return inf if inf is not None and inf.synced.is_set() and not inf.forbidden else None

    def forbidden(self, kind: str, namespace: str | None) -> bool:
        """Whether an informer follows ``kind`` there and the API server refuses it (the
        operator's role lacks the rights): reads then find nothing rather than fail."""
        inf = self.informers.get((kind, namespace or ""))
        return inf is not None and inf.forbidden

    async def cached_get(self, kind: str, namespace: str, name: str) -> Obj | None:
        """From the informer when one follows the kind there (less what ``SLIM`` drops),
        else from the API."""
        if self.forbidden(kind, namespace):
            return None
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
        if self.forbidden(kind, namespace):
            return []
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
