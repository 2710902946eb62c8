"""Typed async client for a node's admin API (``/v1/cluster``), for the day-2 sequencer.

The operator never decides protocol matters; it asks the group who leads and orders
membership changes around pod lifecycles: learner first, then voter; remove before the pod
goes; transfer leadership off a pod before replacing it.
"""

from __future__ import annotations

import asyncio
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import aiohttp

from novacron_core.consensus.interface import GroupStatus
from novacron_operator.builders.common import API_PORT, PEER_PORT
from novacron_operator.models import RegionHealthStatus, SloBurnStatus

# test hook: a JSON file {"pod": {"peer": "h:p", "http": "h:p"}} overriding pod DNS names,
# for control planes whose pods run no node (the e2e suite runs real nodes beside kwok)
ADDRESSES_ENV = "NOVACRON_NODE_ADDRESSES"


@dataclass(frozen=True)
class ClusterInfo:
    node: str
    role: str
    term: int
    leader: str | None
    commit_index: int
    applied_index: int
    voters: tuple[str, ...]
    learners: tuple[str, ...]
    peers: dict[str, dict[str, str]] = field(default_factory=dict, compare=False)
    # the node lost its state and waits to be replaced (removed, re-added as a learner)
    rejoining: bool = False

    # the group's consensus protocol, as the node reports it
    protocol: str = "raft"

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> ClusterInfo:
        """Parse ``/v1/cluster`` with the node's own model of it (``GroupStatus``); raises
        ValueError (pydantic's ValidationError) on a document it cannot read."""
        st = GroupStatus.model_validate(doc)
        return cls(
            node=st.id,
            role=st.role,
            term=st.term,
            leader=st.leader,
            commit_index=st.commit,
            applied_index=st.applied,
            voters=tuple(sorted(st.voters)),
            learners=tuple(sorted(st.learners)),
            peers={n: a.model_dump() for n, a in st.peers.items()},
            rejoining=st.rejoining,
            protocol=st.protocol,
        )


def health_from_json(doc: dict[str, Any]) -> RegionHealthStatus:
    """``/v1/observe/health`` as region status holds it; ValueError (pydantic's) or
    KeyError/TypeError on a document it cannot read."""
    components = {
        name: float(c["score"]) for name, c in doc["components"].items() if c["score"] is not None
    }
    slos = [
        SloBurnStatus.model_validate(
            {
                "name": name,
                "objective": s["objective"],
                **{f"burnRate{w}": _rounded(s["burn_rate"].get(w)) for w in ("5m", "1h", "6h")},
            }
        )
        for name, s in sorted((doc.get("slos") or {}).items())
    ]
    return RegionHealthStatus(
        score=doc["score"], node=doc.get("node", ""), components=components, slos=slos
    )


def _rounded(v: Any) -> float | None:
    return None if v is None else round(float(v), 3)


@dataclass(frozen=True)
class Address:
    peer: str  # host:port of the Raft peer listener
    http: str  # host:port of the HTTP (client + admin) API


class NodeAdmin(Protocol):
    async def cluster(self) -> ClusterInfo: ...
    async def add_learner(self, node: str, address: Address) -> ClusterInfo: ...
    async def promote(self, node: str) -> ClusterInfo: ...
    async def remove(self, node: str) -> ClusterInfo: ...
    async def transfer_leader(self, target: str) -> None: ...


class HttpNodeAdmin:
    """NodeAdmin over HTTP; ``base`` is e.g. ``http://us-east-0.us-east-peers.ns.svc:8080``."""

    def __init__(self, base: str, session: aiohttp.ClientSession, timeout: float = 3.0) -> None:
        self.base, self.session = base.rstrip("/"), session
        self.timeout = aiohttp.ClientTimeout(total=timeout)

    async def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        async with self.session.request(
            method, self.base + path, json=body, timeout=self.timeout
        ) as resp:
            resp.raise_for_status()
            return await resp.json()

    async def cluster(self) -> ClusterInfo:
        return ClusterInfo.from_json(await self._call("GET", "/v1/cluster"))

    async def health(self) -> RegionHealthStatus:
        """The node's health score and SLO burn rates (``GET /v1/observe/health``)."""
        return health_from_json(await self._call("GET", "/v1/observe/health"))

    async def _member(self, action: str, node: str, address: Address | None = None) -> ClusterInfo:
        body: dict[str, Any] = {"action": action, "node": node}
        if address is not None:
            body |= {"peer": address.peer, "http": address.http}
        doc = await self._call("POST", "/v1/cluster/members", body)
        return ClusterInfo.from_json(doc)

    async def add_learner(self, node: str, address: Address) -> ClusterInfo:
        return await self._member("add_learner", node, address)

    async def promote(self, node: str) -> ClusterInfo:
        return await self._member("promote", node)

    async def remove(self, node: str) -> ClusterInfo:
        return await self._member("remove", node)

    async def transfer_leader(self, target: str) -> None:
        await self._call("POST", "/v1/cluster/transfer", {"target": target})


class Resolver:
    """Where a region's node pods listen: their headless-Service DNS names, or the map file
    named by NOVACRON_NODE_ADDRESSES (re-read whenever it changes)."""

    def __init__(self, path: str | None = None) -> None:
        self.path = Path(path) if path else None
        self._mtime: float | None = None
        self._map: dict[str, Address] = {}

    @classmethod
    def from_env(cls) -> Resolver:
        return cls(os.environ.get(ADDRESSES_ENV) or None)

    def _load(self) -> dict[str, Address]:
        assert self.path is not None
        try:
            mtime = self.path.stat().st_mtime
        except FileNotFoundError:
            return {}
        if mtime != self._mtime:
            try:
                doc = json.loads(self.path.read_text())
            except ValueError:  # caught mid-write: keep the last good map
                return self._map
            self._map = {k: Address(v["peer"], v["http"]) for k, v in doc.items()}
            self._mtime = mtime
        return self._map

    def address(self, namespace: str, service: str, pod: str) -> Address | None:
        if self.path is not None:
            return self._load().get(pod)
        host = f"{pod}.{service}.{namespace}.svc"
        return Address(f"{host}:{PEER_PORT}", f"{host}:{API_PORT}")


class NodeClients:
    """The admin API of every node of a region: probe them all, act on the leader."""

    def __init__(self, resolver: Resolver | None = None, timeout: float = 1.5) -> None:
        self.resolver = resolver or Resolver.from_env()
        self.timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def admin(self, address: Address) -> HttpNodeAdmin:
        return HttpNodeAdmin(f"http://{address.http}", self.session(), self.timeout)

    async def probe(self, namespace: str, service: str, pods: list[str]) -> dict[str, ClusterInfo]:
        """GET /v1/cluster on each pod's node at once; the ones that answer, by node id."""

        async def one(pod: str) -> ClusterInfo | None:
            address = self.resolver.address(namespace, service, pod)
            if address is None:
                return None
            try:
                return await self.admin(address).cluster()
            except (aiohttp.ClientError, TimeoutError, ValueError, KeyError):
                return None

        answers = await asyncio.gather(*(one(p) for p in pods))
        return {pod: a for pod, a in zip(pods, answers, strict=True) if a is not None}

    async def health(
        self, namespace: str, service: str, pods: list[str]
    ) -> RegionHealthStatus | None:
        """The first of ``pods`` (in order) whose node answers ``/v1/observe/health``."""
        for pod in pods:
            address = self.resolver.address(namespace, service, pod)
            if address is None:
                continue
            try:
                return await self.admin(address).health()
            except (aiohttp.ClientError, TimeoutError, ValueError, KeyError, TypeError):
                continue
        return None
