"""What the HTTP API needs from the node process (``runtime/node.py``'s ``NodeServer``
implements it). The API depends on this, not on the node, so the two modules do not import
each other."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import aiohttp

from novacron_core.conflict.engine import ConflictEngine
from novacron_core.consensus.interface import GroupStatus
from novacron_core.consensus.kv import KVStore
from novacron_core.runtime.metrics import NodeMetrics
from novacron_core.runtime.settings import NodeSettings

Addr = tuple[str, int]


class Pending(Protocol):
    @property
    def pending(self) -> int: ...


class NodeView(Protocol):
    settings: NodeSettings
    metrics: NodeMetrics
    http: aiohttp.ClientSession | None
    rejoining: bool
    consistency: str  # "linearizable" or "eventual": what an ok reply promises
    peers: dict[str, tuple[Addr, Addr]]
    static_peers: dict[str, tuple[Addr, Addr]]
    kv: KVStore  # the group's state machine (the observer counts its keys)
    # how to read a VM homed in another region (this node's federation replica), if any
    replicated_vm: Callable[[str], Awaitable[dict[str, Any] | None]] | None

    @property
    def id(self) -> str: ...

    @property
    def driver(self) -> Pending | None: ...

    @property
    def leader(self) -> str | None: ...

    async def submit(self, req: Any) -> Any: ...

    def conflict_engine(self) -> ConflictEngine: ...

    def home_urls(self, region: str) -> list[str]: ...

    def leader_http(self) -> Addr | None: ...

    def leader_change(self) -> asyncio.Future[None]: ...

    def forget_leader_change(self, fut: asyncio.Future[None]) -> None: ...

    def status(self) -> GroupStatus: ...

    def refresh_metrics(self) -> None: ...
