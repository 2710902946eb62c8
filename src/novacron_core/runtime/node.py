"""One ``novacron node`` process: Raft group member, KV/VM store, HTTP and admin API."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import signal
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from aiohttp import web

from novacron_core.consensus.kv import KVStore
from novacron_core.consensus.raft import LEADER, RaftConfig, RaftNode, Reply
from novacron_core.runtime.driver import Driver
from novacron_core.runtime.metrics import NodeMetrics
from novacron_core.runtime.settings import NodeSettings, split_addr
from novacron_core.runtime.storage import CorruptLogError, FileStorage
from novacron_core.runtime.transport import Transport, tls_contexts

log = logging.getLogger(__name__)


class NodeServer:
    def __init__(self, settings: NodeSettings) -> None:
        self.settings = settings
        self.peers = settings.peer_map()
        self.metrics = NodeMetrics()
        self.storage = FileStorage(settings.data_dir / "raft", fsync=settings.fsync)
        if self.storage.torn_bytes:
            log.warning("recovered from a torn log tail (%d bytes cut)", self.storage.torn_bytes)
        voters = () if settings.join else tuple(sorted(self.peers))
        self.raft = RaftNode(
            settings.node_id,
            self.storage.load(),
            KVStore(),
            random.Random(int.from_bytes(os.urandom(8), "big")),
            RaftConfig(
                election_timeout=settings.election_timeout_ms / 1000,
                heartbeat_interval=settings.heartbeat_ms / 1000,
                snapshot_entries=settings.snapshot_entries,
                read_mode=settings.read_mode,
            ),
            voters,
        )
        self.kv = self.raft.sm
        self.driver: Driver | None = None
        self.transport: Transport | None = None
        self.http: aiohttp.ClientSession | None = None
        self.stopping = asyncio.Event()
        # Set by a process that also holds the federation's replica (runtime/federation_host):
        # how to read a VM homed in another region, which this region's group does not hold.
        self.replicated_vm: Callable[[str], Awaitable[dict[str, Any] | None]] | None = None

    @property
    def id(self) -> str:
        return self.settings.node_id

    async def submit(self, req: Any) -> Reply:
        assert self.driver is not None
        return await self.driver.request(req, self.settings.request_timeout_s)

    def leader_http(self) -> tuple[str, int] | None:
        lead = self.raft.leader
        if lead is None or lead == self.id or lead not in self.peers:
            return None
        return self.peers[lead][1]

    def is_leader(self) -> bool:
        return self.raft.role == LEADER

    def refresh_metrics(self) -> None:
        m, r = self.metrics, self.raft
        m.term.set(r.term)
        m.commit.set(r.commit)
        m.applied.set(r.applied)
        m.is_leader.set(1 if r.role == LEADER else 0)
        m.elections.set(r.stats["elections"])

    async def run(self) -> None:
        from novacron_core.runtime.http_api import build_app

        s = self.settings
        me = self.peers.get(self.id)
        peer_listen = split_addr(s.peer_listen) if s.peer_listen else (me[0] if me else None)
        http_listen = split_addr(s.http_listen) if s.http_listen else (me[1] if me else None)
        if peer_listen is None or http_listen is None:
            raise SystemExit(f"{self.id}: no listen address (set --peers or --peer-listen)")
        server_ssl, client_ssl = tls_contexts(s.tls_cert, s.tls_key, s.tls_ca)
        self.transport = Transport(
            self.id,
            {n: a[0] for n, a in self.peers.items() if n != self.id},
            self._deliver,
            server_ssl=server_ssl,
            client_ssl=client_ssl,
        )
        self.driver = Driver(self.raft, self.storage, self.transport.send, self.metrics)
        await self.transport.start(*peer_listen)
        self.http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=s.request_timeout_s))
        runner = web.AppRunner(build_app(self), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, http_listen[0], http_listen[1])
        await site.start()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self.stopping.set)
        log.info("node %s: peers on %s, http on %s", self.id, peer_listen, http_listen)
        driver_task = asyncio.create_task(self.driver.run())
        stop_task = asyncio.create_task(self.stopping.wait())
        await asyncio.wait({driver_task, stop_task}, return_when=asyncio.FIRST_COMPLETED)
        # Clean shutdown: stop taking requests, let the driver finish its batch, flush disk.
        self.driver.stop()
        await runner.cleanup()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(driver_task, 2.0)
        if driver_task.done() and driver_task.exception() is not None:
            raise driver_task.exception()  # type: ignore[misc]
        await self.transport.close()
        await self.http.close()
        self.storage.close()

    def _deliver(self, src: str, msg: Any) -> None:
        assert self.driver is not None
        self.driver.deliver(src, msg)


def run_node(settings: NodeSettings) -> None:
    """Run a node until SIGTERM/SIGINT (uvloop when available)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        asyncio.run(_main(settings))
    else:
        uvloop.run(_main(settings))


async def _main(settings: NodeSettings) -> None:
    try:
        server = NodeServer(settings)
    except CorruptLogError as e:
        log.error("%s", e)
        raise SystemExit(2) from None
    await server.run()
