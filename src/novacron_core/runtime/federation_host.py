"""A ``novacron node`` that is also a replica of the federation's CRDT state.

Runs the regular :class:`NodeServer` (Raft member, HTTP API) and, in the same event loop, a
:class:`~novacron_core.sync.engine.SyncNode` replica linked to every node of every region
over its own TCP port (codec frames). The Raft leader of each region publishes what its
group committed (``federation.vmflow``); gossip and Merkle anti-entropy carry it to the
other regions. Inter-region latency and partitions are injected on the sending side of that
link (``federation.netem.LinkRules``): unprivileged, no ``tc`` needed. With
``--fed-delay network`` the link adds no delay (the demo's network namespaces delay with
``tc netem``); the partition switch still works.

Extra HTTP API (own port): ``GET /v1/federation/vms``, ``GET /v1/federation/vms/{id}``,
``GET /v1/federation/status``, ``GET /metrics``,
``POST /v1/federation/netem {"partitioned": [regions]}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from typing import Any, cast

import click
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge, generate_latest

from novacron_core.codec import CodecError, frame
from novacron_core.consensus.interface import BARRIER
from novacron_core.federation import vmflow
from novacron_core.federation.netem import LinkRules, demo_rtt
from novacron_core.runtime.driver import Driver
from novacron_core.runtime.metrics import NodeMetrics
from novacron_core.runtime.node import Applied, NodeServer
from novacron_core.runtime.node_cli import node_command
from novacron_core.runtime.settings import load_settings, split_addr
from novacron_core.runtime.sync_journal import DiskDurable
from novacron_core.runtime.transport import Hello, serve_peer_frames
from novacron_core.sync.engine import Read, SyncNode
from novacron_core.sync.messages import AeLeaves, AeRanges, AeStates, Gossip

log = logging.getLogger(__name__)
SYNC_MESSAGES = (Gossip, AeRanges, AeLeaves, AeStates)
MAX_FRAME = 64 << 20


class _DurableAdapter:
    """The driver's storage interface over a sync ``DiskDurable``."""

    def __init__(self, durable: DiskDurable) -> None:
        self.durable = durable

    def apply(self, writes: list[Any]) -> None:
        self.durable.apply(writes)

    def sync(self) -> None:
        self.durable.fsync()


def _log_bad_sync_frame(src: str | None, error: CodecError) -> None:
    log.warning("closing sync connection from %s: %s", src or "?", error)


def parse_fed_peers(spec: str) -> dict[str, tuple[str, tuple[str, int]]]:
    """``"id=region@host:port,..."`` -> {id: (region, (host, port))}."""
    out: dict[str, tuple[str, tuple[str, int]]] = {}
    for item in filter(None, (p.strip() for p in spec.split(","))):
        node, rest = item.split("=", 1)
        region, _, addr = rest.partition("@")
        out[node] = (region, split_addr(addr))
    return out


class SyncLink:
    """One outbound connection per peer; each message held for the injected one-way delay
    (or dropped while either side's region is partitioned)."""

    def __init__(
        self,
        me: str,
        region: str,
        peers: dict[str, tuple[str, tuple[str, int]]],
        rules: LinkRules,
        deliver: Any,
    ) -> None:
        self.me, self.region, self.peers, self.rules, self.deliver = (
            me,
            region,
            peers,
            rules,
            deliver,
        )
        self._queues: dict[str, asyncio.Queue[bytes]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._server: asyncio.Server | None = None
        self.dropped = 0
        self.loop = asyncio.get_running_loop()

    async def start(self, host: str, port: int) -> None:
        self._server = await asyncio.start_server(self._serve, host, port)

    def send(self, dst: str, msg: Any) -> None:
        peer = self.peers.get(dst)
        if peer is None:
            return
        delay = self.rules.delay(self.region, peer[0])
        if delay is None:
            self.dropped += 1
            return
        data = frame(msg, MAX_FRAME)
        if delay > 0:
            self.loop.call_later(delay, self._enqueue, dst, data)
        else:
            self._enqueue(dst, data)

    def _enqueue(self, dst: str, data: bytes) -> None:
        q = self._queues.get(dst)
        if q is None:
            q = self._queues[dst] = asyncio.Queue(4096)
            self._tasks.append(asyncio.create_task(self._sender(dst, q)))
        with contextlib.suppress(asyncio.QueueFull):
            q.put_nowait(data)

    async def _sender(self, dst: str, q: asyncio.Queue[bytes]) -> None:
        host, port = self.peers[dst][1]
        while True:
            try:
                _, writer = await asyncio.open_connection(host, port)
            except OSError:
                await asyncio.sleep(0.2)
                continue
            try:
                writer.write(frame(Hello(self.me)))
                while True:
                    chunks = [await q.get()]
                    while not q.empty() and len(chunks) < 256:
                        chunks.append(q.get_nowait())
                    writer.write(b"".join(chunks))
                    await writer.drain()
            except Exception as e:  # the link must live on
                log.info("sync link to %s lost: %r", dst, e)
                await asyncio.sleep(0.2)
            finally:
                writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await serve_peer_frames(
                reader, SYNC_MESSAGES, self.deliver, _log_bad_sync_frame, MAX_FRAME
            )
        finally:
            writer.close()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t


class FederationSidecar:
    def __init__(
        self,
        node: NodeServer,
        fed_peers: dict[str, tuple[str, tuple[str, int]]],
        api_listen: tuple[str, int],
        rules: LinkRules,
        latency: str = "injected in the sync link (one-way = RTT/2 per region pair)",
    ) -> None:
        self.node = node
        self.latency = latency
        self.region = node.settings.region
        self.fed_id = f"{self.region}-{node.id}"
        self.fed_peers = fed_peers
        self.api_listen = api_listen
        self.rules = rules
        # Publishing follows the group's applies (NodeServer.on_apply), not a poll: only
        # the keys just applied are compared, and a new leader (or a snapshot) compares all.
        self._wake = asyncio.Event()
        self._dirty: set[str] = set()
        self._full = True
        self._published_term = -1
        self._established = -1
        self.durable = DiskDurable(node.settings.data_dir / "sync", fsync="never")
        self.sync = SyncNode(
            self.fed_id,
            self.region,
            {p: r for p, (r, _) in fed_peers.items()},
            self.durable,
            vmflow.FEDERATION_SYNC,
            seed=int.from_bytes(os.urandom(4), "big"),
        )
        self.published = 0
        self.heartbeat_ms = 200
        self._last_heartbeat_ms = 0
        self.registry = CollectorRegistry()
        r = self.registry
        self.region_lag = Gauge(
            "novacron_sync_region_lag_seconds",
            "Age of the newest heartbeat held from each other region (replication lag bound)",
            ["region"],
            registry=r,
        )
        self.prom = {
            "keys": Gauge("novacron_sync_keys", "Keys in the federation replica", registry=r),
            "published": Gauge(
                "novacron_sync_published", "VM record changes published here", registry=r
            ),
            "dropped": Gauge(
                "novacron_sync_link_dropped", "Sync messages dropped by a partition", registry=r
            ),
            "unacked": Gauge(
                "novacron_sync_oldest_unacked_seconds",
                "Age of the oldest update a live peer has not acknowledged",
                registry=r,
            ),
            "concurrent": Gauge(
                "novacron_sync_concurrent_updates", "Concurrent updates detected", registry=r
            ),
            "partitioned": Gauge(
                "novacron_sync_partitioned", "1 while this region is cut off", registry=r
            ),
        }

    async def run(self) -> None:
        me = self.fed_peers[self.fed_id]
        link = SyncLink(self.fed_id, self.region, self.fed_peers, self.rules, self._deliver)
        self.link = link
        self.driver = Driver(self.sync, _DurableAdapter(self.durable), link.send, NodeMetrics())
        await link.start(*me[1])
        self.node.replicated_vm = self.replicated_vm  # GET :8080/v1/vms/{id} for foreign VMs
        app = web.Application()
        app.router.add_get("/v1/federation/vms", self.vms)
        app.router.add_get("/v1/federation/vms/{id}", self.vm)
        app.router.add_get("/v1/federation/status", self.status)
        app.router.add_post("/v1/federation/netem", self.netem)
        app.router.add_get("/metrics", self.metrics)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, *self.api_listen).start()
        driver_task = asyncio.create_task(self.driver.run())
        unsubscribe = self.node.on_apply(self._on_apply)
        stopped = asyncio.create_task(self.node.stopping.wait())
        stopped.add_done_callback(lambda _: self._wake.set())
        try:
            while not self.node.stopping.is_set():
                # the timeout only paces the heartbeat; commits wake the loop at once
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.heartbeat_ms / 1000)
                self._wake.clear()
                await self._publish()
        finally:
            unsubscribe()
            stopped.cancel()
            self.node.replicated_vm = None
            self.driver.stop()
            await runner.cleanup()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(driver_task, 2.0)
            await link.close()
            self.durable.fsync()
            self.durable.close()

    def _deliver(self, src: str, msg: Any) -> None:
        self.driver.deliver(src, msg)

    def _on_apply(self, applied: Applied) -> None:
        if applied.restored:
            self._full = True  # the whole state was replaced: which keys changed is unknown
        else:
            for e in applied.entries:
                if e.kind == BARRIER and self.node.is_leader() and e.term == self.node.soft.term:
                    self._established = e.term
            self._dirty.update(
                cmd.key for _, cmd in applied.commands() if cmd.key.startswith(vmflow.PREFIX)
            )
        self._wake.set()

    async def _publish(self) -> None:
        """On the region's leader: turn newly committed VM records into CRDT updates."""
        term = self.node.soft.term
        if not self.node.is_leader():
            self._dirty.clear()  # a later leader term compares everything anyway
            return
        # Only a leader whose term's barrier committed knows the true commit index (figure
        # 8); before that its state may lag what the previous leader already published.
        if self._established != term:
            return
        keys: set[str] | None = self._dirty
        if self._full or term != self._published_term:
            keys = None  # what the previous leader published, or missed, is not known here
            self._full, self._published_term = False, term
        self._dirty = set()
        for change in vmflow.changes(self.node.kv.data, self.sync.store, self.region, keys):
            m = vmflow.as_mutation(change, self.sync.hlc.now(int(time.time() * 1000)))
            await self.driver.request(m)
            self.published += 1
        # after the changes: updates travel in buffer order, so a replica holding this mark
        # almost always holds what was published before it
        now_ms = int(time.time() * 1000)
        if now_ms - self._last_heartbeat_ms >= self.heartbeat_ms:
            self._last_heartbeat_ms = now_ms
            await self.driver.request(vmflow.heartbeat(self.region, self.sync.hlc, now_ms))

    # ------------------------------------------------------------ HTTP

    async def vms(self, request: web.Request) -> web.Response:
        return web.json_response({"region": self.region, "vms": vmflow.records(self.sync.store)})

    async def vm(self, request: web.Request) -> web.Response:
        record = await self.replicated_vm(request.match_info["id"])
        if record is None:
            return web.json_response({"error": "no such VM in the federation"}, status=404)
        return web.json_response(record)

    async def replicated_vm(self, vm_id: str) -> dict[str, Any] | None:
        """This replica's copy of a VM record, from whichever region homes it."""
        reply = await self.driver.request(Read(vmflow.PREFIX + vm_id))
        return cast(dict[str, Any], json.loads(reply)) if isinstance(reply, bytes) else None

    async def status(self, request: web.Request) -> web.Response:
        now = asyncio.get_running_loop().time()
        return web.json_response(
            {
                "node": self.fed_id,
                "region": self.region,
                "keys": len(self.sync.store),
                "published": self.published,
                "replica": self.sync.replica,
                "vector": self.sync.seen.vv.to_wire(),
                "vms": len(vmflow.records(self.sync.store)),
                "region_lag_s": vmflow.region_lags(
                    self.sync.store, int(time.time() * 1000), self.region
                ),
                "oldest_unacked_s": self.lag(now),
                "partitioned": sorted(self.rules.partitioned),
                "dropped": self.link.dropped,
                "latency": self.latency,
            }
        )

    async def metrics(self, request: web.Request) -> web.Response:
        now = asyncio.get_running_loop().time()
        m = self.prom
        m["keys"].set(len(self.sync.store))
        m["published"].set(self.published)
        m["dropped"].set(self.link.dropped)
        m["unacked"].set(self.lag(now))
        m["concurrent"].set(self.sync.concurrent_updates)
        m["partitioned"].set(1 if self.region in self.rules.partitioned else 0)
        lags = vmflow.region_lags(self.sync.store, int(time.time() * 1000), self.region)
        for region, lag in lags.items():
            self.region_lag.labels(region).set(lag)
        body = generate_latest(self.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    def lag(self, now: float, heard_within: float = 2.0) -> float:
        """Age of the oldest update here that a live peer (heard from lately) has not
        acknowledged; updates replayed from the journal at start (arrival 0) are skipped."""
        worst = 0.0
        sync = self.sync
        for peer, heard in sync.last_heard.items():
            if now - heard > heard_within:
                continue
            known = sync.known.get(peer)
            for dot, (_, arrived) in sync.buffer.items():
                if arrived > 0 and (known is None or not known.contains(dot)):
                    worst = max(worst, now - arrived)
        return worst

    async def netem(self, request: web.Request) -> web.Response:
        body = await request.json()
        parts = body.get("partitioned", []) if isinstance(body, dict) else None
        if not isinstance(parts, list) or not all(isinstance(p, str) for p in parts):
            return web.json_response({"error": "partitioned: a list of regions"}, status=422)
        self.rules.set_partitioned(parts)
        return web.json_response({"partitioned": sorted(self.rules.partitioned)})


async def _main(settings: Any, fed_peers: str, fed_http: str, regions: str, delay: str) -> None:
    node = NodeServer(settings)
    region_list = [r for r in regions.split(",") if r]
    if delay == "network":
        rules, latency = LinkRules(), "in the network (tc netem between namespaces)"
    else:
        rules = LinkRules(demo_rtt(region_list))
        latency = "injected in the sync link (one-way = RTT/2 per region pair)"
    sidecar = FederationSidecar(
        node, parse_fed_peers(fed_peers), split_addr(fed_http), rules, latency=latency
    )
    node_task = asyncio.create_task(node.run())
    side_task = asyncio.create_task(sidecar.run())
    await asyncio.wait({node_task, side_task}, return_when=asyncio.FIRST_EXCEPTION)
    node.stopping.set()
    await asyncio.gather(node_task, side_task, return_exceptions=False)


@click.command(
    "federated-node",
    params=[
        *node_command.params,
        click.Option(["--fed-peers"], required=True, help="id=region@host:port,... incl. self"),
        click.Option(["--fed-http"], required=True, help="host:port of the federation API"),
        click.Option(["--fed-regions"], required=True, help="region names, comma-separated"),
        click.Option(
            ["--fed-delay"],
            type=click.Choice(["transport", "network"]),
            default="transport",
            show_default=True,
            help="who delays cross-region sync traffic: this link (RTT/2), or the network",
        ),
    ],
)
def federated_node_command(
    config_file: str | None,
    fed_peers: str,
    fed_http: str,
    fed_regions: str,
    fed_delay: str,
    **flags: Any,
) -> None:
    """A node plus its federation replica (what ``novacron demo`` starts)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    settings = load_settings(config_file, **flags)
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        asyncio.run(_main(settings, fed_peers, fed_http, fed_regions, fed_delay))
    else:
        uvloop.run(_main(settings, fed_peers, fed_http, fed_regions, fed_delay))


if __name__ == "__main__":
    federated_node_command()
