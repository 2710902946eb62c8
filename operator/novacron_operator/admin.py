"""Typed async client for a node's admin API (``/v1/cluster``), for the day-2 sequencer.

The operator never decides protocol matters; it asks the group who leads and orders
membership changes around pod lifecycles: learner first, then voter; remove before the pod
goes; transfer leadership off a pod before replacing it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp


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

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> ClusterInfo:
        return cls(
            node=str(doc["id"]),
            role=str(doc["role"]),
            term=int(doc["term"]),
            leader=doc.get("leader"),
            commit_index=int(doc["commit"]),
            applied_index=int(doc.get("applied", 0)),
            voters=tuple(sorted(doc.get("voters", []))),
            learners=tuple(sorted(doc.get("learners", []))),
        )

    def caught_up(self, leader_commit: int) -> bool:
        return self.applied_index >= leader_commit


class NodeAdmin(Protocol):
    async def cluster(self) -> ClusterInfo: ...
    async def add_learner(self, node: str) -> ClusterInfo: ...
    async def promote(self, node: str) -> ClusterInfo: ...
    async def remove(self, node: str) -> ClusterInfo: ...
    async def transfer_leader(self, target: str) -> None: ...


class HttpNodeAdmin:
    """NodeAdmin over HTTP; ``base`` is e.g. ``http://us-east-0.us-east-peers.ns.svc:8080``."""

    def __init__(self, base: str, session: aiohttp.ClientSession, timeout: float = 3.0) -> None:
        self.base, self.session = base.rstrip("/"), session
        self.timeout = aiohttp.ClientTimeout(total=timeout)

    async def _call(self, method: str, path: str, body: dict[str, str] | None = None) -> Any:
        async with self.session.request(
            method, self.base + path, json=body, timeout=self.timeout
        ) as resp:
            resp.raise_for_status()
            return await resp.json()

    async def cluster(self) -> ClusterInfo:
        return ClusterInfo.from_json(await self._call("GET", "/v1/cluster"))

    async def _member(self, action: str, node: str) -> ClusterInfo:
        doc = await self._call("POST", "/v1/cluster/members", {"action": action, "node": node})
        return ClusterInfo.from_json(doc)

    async def add_learner(self, node: str) -> ClusterInfo:
        return await self._member("add_learner", node)

    async def promote(self, node: str) -> ClusterInfo:
        return await self._member("promote", node)

    async def remove(self, node: str) -> ClusterInfo:
        return await self._member("remove", node)

    async def transfer_leader(self, target: str) -> None:
        await self._call("POST", "/v1/cluster/transfer", {"target": target})
