"""Which nodes each region has, and which one leads: asked of the nodes themselves.

Every ``discovery_interval_s`` (and at once when nudged, e.g. after a node said "no
leader"), one node of the region is asked ``GET /v1/cluster``: its answer names the
group's members with their client-API addresses (``peers``) and the leader it follows.
Members that appear join the pool; members that disappear drain. A region configured
with fixed ``backends`` is not asked: its list is the configuration. When no node of a
region answers, the last known members stay (their own health checks decide about them).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

import aiohttp

from novacron_core.balancing import BackendSpec, GeoPoint
from novacron_core.runtime.aio import wait_set
from novacron_core.runtime.gateway.config import split_host_port
from novacron_core.runtime.gateway.federation import RegionSeed

if TYPE_CHECKING:
    from novacron_core.runtime.gateway.server import Gateway

log = logging.getLogger(__name__)
MIN_NUDGE_GAP_S = 0.1


class Discovery:
    def __init__(self, gw: Gateway, seeds: list[RegionSeed], interval_s: float) -> None:
        self.gw = gw
        self.seeds = {s.name: s for s in seeds}
        self.interval_s = interval_s
        self.events = {s.name: asyncio.Event() for s in seeds}
        self.last_nudge: dict[str, float] = {}
        self.known: dict[str, list[str]] = {}  # region -> member addresses, last seen
        self.answered: dict[str, float] = {}
        self.tasks: list[asyncio.Task[None]] = []
        self.http: aiohttp.ClientSession | None = None
        self.rr = 0

    def start(self) -> None:
        timeout = aiohttp.ClientTimeout(total=2.0, connect=1.0)
        self.http = aiohttp.ClientSession(timeout=timeout)
        for s in self.seeds.values():
            if s.backends and not s.seeds:
                self._fixed(s)
            else:
                self.tasks.append(asyncio.create_task(self._loop(s)))

    async def close(self) -> None:
        for t in self.tasks:
            t.cancel()
        for t in self.tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        if self.http is not None:
            await self.http.close()

    def nudge(self, region: str) -> None:
        now = self.gw.loop.time()
        if now - self.last_nudge.get(region, -1.0) < MIN_NUDGE_GAP_S:
            return
        self.last_nudge[region] = now
        ev = self.events.get(region)
        if ev is not None:
            ev.set()

    def _spec(self, s: RegionSeed, node_id: str, addr: str) -> BackendSpec:
        host, port = split_host_port(addr, f"region {s.name} member {node_id}")
        loc = GeoPoint(*s.location) if s.location else None
        return BackendSpec(
            f"{s.name}/{node_id}", host, port, s.name, s.zone, s.weight, s.priority, loc
        )

    def _fixed(self, s: RegionSeed) -> None:
        specs = [self._spec(s, a, a) for a in s.backends]
        self.gw.set_members(s.name, specs, None)

    async def _loop(self, s: RegionSeed) -> None:
        ev = self.events[s.name]
        while True:
            try:
                await self.refresh(s)
            except Exception:
                log.exception("discovery of region %s failed", s.name)
            await wait_set(ev, self.interval_s)
            ev.clear()

    async def refresh(self, s: RegionSeed) -> bool:
        """Ask the region's nodes (known members first, then the seeds) until one answers."""
        known = self.known.get(s.name, [])
        self.rr += 1
        if known:
            k = self.rr % len(known)
            known = known[k:] + known[:k]
        addrs = list(dict.fromkeys([*known, *s.seeds, *s.backends]))
        for addr in addrs:
            doc = await self._cluster(addr)
            if doc is None:
                continue
            peers = doc.get("peers")
            specs: list[BackendSpec] = []
            if isinstance(peers, dict) and peers:
                for node_id, a in sorted(peers.items()):
                    http = a.get("http") if isinstance(a, dict) else None
                    if isinstance(http, str):
                        specs.append(self._spec(s, str(node_id), http))
            else:  # an answer without member addresses: this address is the member
                specs.append(self._spec(s, str(doc.get("id") or addr), addr))
            leader = doc.get("leader")
            self.known[s.name] = [f"{b.host}:{b.port}" for b in specs]
            self.answered[s.name] = self.gw.loop.time()
            self.gw.set_members(s.name, specs, f"{s.name}/{leader}" if leader else None)
            return True
        return False

    async def _cluster(self, addr: str) -> dict[str, Any] | None:
        assert self.http is not None
        try:
            scheme = "https" if self.gw.upstream_ssl is not None else "http"
            ssl_ctx = self.gw.upstream_ssl if self.gw.upstream_ssl is not None else True
            async with self.http.get(f"{scheme}://{addr}/v1/cluster", ssl=ssl_ctx) as r:
                if r.status != 200:
                    return None
                doc = await r.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError, OSError):
            return None
        return doc if isinstance(doc, dict) else None
