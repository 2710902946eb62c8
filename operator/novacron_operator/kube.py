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
import os
import ssl
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from novacron_operator import FIELD_MANAGER

Obj = dict[str, Any]
SA_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")

# kind -> (apiVersion, plural); every kind the operator reads or writes
KINDS: dict[str, tuple[str, str]] = {
    "ConfigMap": ("v1", "configmaps"),
    "Secret": ("v1", "secrets"),
    "Service": ("v1", "services"),
    "ServiceAccount": ("v1", "serviceaccounts"),
    "Pod": ("v1", "pods"),
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


class Kube:
    def __init__(self, config: Config) -> None:
        self.config = config
        self._session: aiohttp.ClientSession | None = None
        self._discovery: dict[str, tuple[bool, float]] = {}
        # skip-unchanged cache: (kind, ns, name) -> (digest we applied, resourceVersion it
        # produced); `seen` holds the latest resourceVersion the child watch reported. Only
        # namespaces we watch qualify: elsewhere nobody would tell us about a hand edit.
        self.watched: set[str] = set()
        self.applied: dict[tuple[str, str, str], tuple[str, str]] = {}
        self.seen: dict[tuple[str, str, str], str] = {}

    async def __aenter__(self) -> Kube:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

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
        """Apply unless this exact manifest is what we last applied and nobody (controller
        or human) has written the object since. Returns whether a request was made."""
        meta = obj["metadata"]
        key = (obj["kind"], meta["namespace"], meta["name"])
        digest = hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()
        cached = self.applied.get(key)
        if (
            meta["namespace"] in self.watched
            and cached is not None
            and cached[0] == digest
            and self.seen.get(key) == cached[1]
        ):
            return False
        result = await self.apply(obj)
        rv = str(result.get("metadata", {}).get("resourceVersion", ""))
        self.applied[key] = (digest, rv)
        self.seen[key] = rv
        return True

    def observe(self, kind: str, namespace: str, name: str, rv: str | None) -> None:
        """Feed from the child watch; rv None means the object is gone."""
        key = (kind, namespace, name)
        if rv is None:
            self.applied.pop(key, None)
            self.seen.pop(key, None)
        else:
            self.seen[key] = rv

    async def create(self, obj: Obj) -> Obj:
        meta = obj["metadata"]
        return await self.request("POST", path(obj["kind"], meta.get("namespace")), obj)

    async def replace(self, obj: Obj) -> Obj:
        meta = obj["metadata"]
        return await self.request(
            "PUT", path(obj["kind"], meta.get("namespace"), meta["name"]), obj
        )

    async def delete(self, kind: str, namespace: str, name: str) -> bool:
        try:
            await self.request(
                "DELETE", path(kind, namespace, name), {"propagationPolicy": "Background"}
            )
            return True
        except ApiError as e:
            if e.status == 404:
                return False
            raise

    async def patch_status(self, kind: str, namespace: str, name: str, status: Obj) -> Obj:
        return await self.request(
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
