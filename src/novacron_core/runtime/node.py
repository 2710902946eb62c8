"""One ``novacron node`` process: the region machine (consensus member, KV/VM store,
federation replica, publisher; ``region/machine.py``) on the generic driver, the one peer
transport, the HTTP API (client, admin, federation) and the federation file.

The group's protocol is the ``protocol`` setting (``consensus/registry.py``: Raft,
Multi-Paxos, eventual); nothing here depends on which one it is. Where the other members
listen comes from the group's configuration: the bootstrap members' addresses from
``peers``, every member added later from its membership change, replicated in the log and
in snapshots. Whenever the member reports a new configuration (``Ready.soft_state``) the
node re-derives its ``peers`` map (leader proxying, ``/v1/cluster``) from it. Federation
replicas are named by their peer address, so a federation message goes to the address its
destination names.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from novacron_core.conflict.engine import ConflictEngine
from novacron_core.consensus.interface import (
    LEADER,
    UNKNOWN,
    ConfigState,
    GroupStatus,
    GroupTuning,
    MemberAddress,
    PeerAddresses,
    Reply,
    SoftState,
    UnsupportedSetting,
)
from novacron_core.consensus.registry import UnknownProtocol, available, protocol
from novacron_core.machine import Ready
from novacron_core.observe.http import client_trace_configs
from novacron_core.observe.spans import NO_SPANS
from novacron_core.observe.tracing import OtelSpans
from novacron_core.observe.tracing import enabled as tracing_enabled
from novacron_core.region.machine import SYNC_MESSAGES, RegionNode, RegionSpec
from novacron_core.runtime.driver import Driver
from novacron_core.runtime.federation import FederationService
from novacron_core.runtime.forward import forward_session
from novacron_core.runtime.heap import freeze_startup_heap
from novacron_core.runtime.http_api import build_app
from novacron_core.runtime.metrics import NodeMetrics
from novacron_core.runtime.region_storage import RegionStorage, foreign_logs
from novacron_core.runtime.settings import NodeSettings, split_addr
from novacron_core.runtime.signals import stop_on_signals
from novacron_core.runtime.storage import CorruptLogError
from novacron_core.runtime.transport import Addr, Hello, Transport, tls_contexts
from novacron_core.runtime.wire_api import WireServer

log = logging.getLogger(__name__)
# In the data dir while the node waits to be replaced after losing its state (see
# ``NodeServer.rejoining``); fsynced, so a restart before the replacement keeps waiting.
REJOINING_MARKER = "rejoining"


class NodeServer:
    def __init__(self, settings: NodeSettings) -> None:
        self.settings = settings
        self.static_peers = settings.peer_map()  # the bootstrap members, from --peers
        self.metrics = NodeMetrics(settings.region, settings.metrics)
        self.protocol = protocol(settings.protocol)
        foreign = foreign_logs(settings.data_dir, self.protocol.name, available())
        if foreign:
            raise UnsupportedSetting(
                f"protocol: {self.protocol.name!r}, but {settings.data_dir} holds the group log "
                f"of {', '.join(foreign)}: this member's state is there, and a protocol is "
                "not switched by restarting (the agreed live switch is not built); start it "
                f"with protocol {foreign[0]!r}, or on an empty data dir to join a new group"
            )
        self.storage = RegionStorage(
            settings.data_dir, self.protocol.name, self.protocol.log_format, settings.fsync
        )
        torn = self.storage.group.torn_bytes
        if torn:
            log.warning("recovered from a torn log tail (%d bytes cut)", torn)
        self.marker = settings.data_dir / REJOINING_MARKER
        # A bootstrap member whose state is gone while the group already exists: it must
        # not bootstrap again as a voter (its empty log would grant any vote and could elect
        # a leader lacking entries it acknowledged before). It starts like a joiner and
        # abstains from elections until removed and re-added as a learner (member replace).
        self.rejoining = self.marker.exists()
        if (
            not self.rejoining
            and settings.cluster_state() == "existing"
            and settings.node_id in self.static_peers
            and self.storage.group.empty()
        ):
            _write_marker(self.marker, settings.fsync)
            self.rejoining = True
        if self.rejoining:
            log.warning(
                "%s: data dir empty but the group exists (initial-cluster-state=existing): "
                "not voting until replaced: remove this member and add it again as a learner "
                '(POST /v1/cluster/members {"action": "remove", "node": "%s"} to the leader, '
                'then {"action": "add_learner", "node": "%s", "peer": ..., "http": ...}, '
                "then promote once caught up); marker %s",
                settings.node_id,
                settings.node_id,
                settings.node_id,
                self.marker,
            )
        # Not a bootstrap member (or --join, or rejoining): start empty and wait for the
        # leader to add us.
        joiner = settings.joiner or self.rejoining
        voters = () if joiner else tuple(sorted(self.static_peers))
        seed_addresses = tuple(
            MemberAddress(n, _fmt(a[0]), _fmt(a[1])) for n, a in sorted(self.static_peers.items())
        )
        me = self.static_peers.get(settings.node_id)
        self.federation = FederationService(self, _fmt(me[0]) if me else "")
        self.machine = RegionNode(
            RegionSpec(
                node_id=settings.node_id,
                region=settings.region,
                protocol=self.protocol,
                tuning=GroupTuning(
                    election_timeout=settings.election_timeout_ms / 1000,
                    heartbeat_interval=settings.heartbeat_ms / 1000,
                    snapshot_entries=settings.snapshot_entries,
                    read_mode=settings.read_mode,
                    # a tick a heartbeat late: this process was starved (docs/raft.md)
                    lag_tolerance=settings.heartbeat_ms / 1000,
                    quorum=settings.quorum,
                ),
                voters=voters,
                addresses=seed_addresses,
                abstain=self.rejoining,
                fed_id=self.federation.fed_id,
                seed=int.from_bytes(os.urandom(8), "big"),
            ),
            self.storage,
            self.federation.initial_plan(),
            spans=OtelSpans() if tracing_enabled() else NO_SPANS,
        )
        self.member = self.machine.group
        self.kv = self.machine.kv
        # What the data dir held at start, before any catch-up from a leader: /v1/cluster
        # reports it ("recovered"), so a check that the node kept its log can fail.
        log.info("recovered from %s: %s", settings.data_dir, self.member.status().recovered)
        # what a successful reply promises (every response says so in a header)
        self.consistency = self.protocol.consistency
        self.driver: Driver | None = None
        self.transport: Transport | None = None
        self.peers: dict[str, tuple[Addr, Addr]] = {}
        self.announced: dict[str, Addr] = {}  # peer addresses senders named in their Hello
        # What the member last reported of itself (Ready.soft_state); the node never reads
        # the member's fields.
        self.soft: SoftState = self.member.soft_state()
        self._seen_conf: ConfigState | None = None
        self._refresh_peers()
        self._leader_waiters: set[asyncio.Future[None]] = set()
        self._logged = False
        self._fed_addrs: dict[str, Addr | None] = {}
        self.http: aiohttp.ClientSession | None = None
        self.stopping = asyncio.Event()
        self.replicated_vm: Callable[[str], Awaitable[dict[str, Any] | None]] | None = (
            self.federation.replicated_vm
        )

    @property
    def id(self) -> str:
        return self.settings.node_id

    def leader_change(self) -> asyncio.Future[None]:
        """A future resolved when this node's view of the leader next changes (a new
        leader, or none while an election runs); pass it to ``forget_leader_change``."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._leader_waiters.add(fut)
        return fut

    def forget_leader_change(self, fut: asyncio.Future[None]) -> None:
        self._leader_waiters.discard(fut)
        fut.cancel()

    def _after_persist(self, ready: Ready) -> None:
        if self.rejoining and self.member.readded():
            self._rejoined()
        soft = ready.soft_state
        if isinstance(soft, SoftState):
            before, self.soft = self.soft, soft
            if soft.leader != before.leader:
                waiters, self._leader_waiters = self._leader_waiters, set()
                for fut in waiters:
                    if not fut.done():
                        fut.set_result(None)
            if (soft.role, soft.term) != (before.role, before.term) or not self._logged:
                # With the monotonic clock (shared by every process on a host), so role
                # changes of several nodes line up: benchmarks/raft.py splits failover time
                # with them.
                self._logged = True
                log.info("raft role %s term %d at %.6f", soft.role, soft.term, time.monotonic())
            self._refresh_peers()

    def _rejoined(self) -> None:
        """Removed and added again as a learner: from here on the leader's configuration
        counts us as a new member, so voting again once promoted is safe. The marker goes
        first: a crash right after leaves a node that is simply a learner."""
        self.marker.unlink(missing_ok=True)
        if self.settings.fsync:
            _fsync_dir(self.marker.parent)
        self.rejoining = False
        self.member.abstain = False
        log.warning("%s: re-added as a learner: no longer rejoining, voting once promoted", self.id)

    def _refresh_peers(self) -> None:
        """Re-derive where members listen from the latest configuration (it takes effect
        when appended, as in Raft, so a leader dials a member the moment it adds it)."""
        conf = self.soft.config
        if conf is self._seen_conf:
            return
        self._seen_conf = conf
        peers = dict(self.static_peers)
        if conf.voters:  # a joiner that has no configuration yet knows only --peers
            for a in conf.addresses:
                try:
                    peers[a.node] = (split_addr(a.peer), split_addr(a.http))
                except ValueError:
                    log.warning("ignoring a malformed address in the configuration: %r", a)
            members = set(conf.members())
            peers = {n: a for n, a in peers.items() if n in members or n == self.id}
        if peers != self.peers:
            log.info("member addresses: %s", {n: _fmt(a[0]) for n, a in sorted(peers.items())})
        self.peers = peers
        if self.transport is not None and ":" not in self.federation.fed_id:
            # a joiner without a peers entry of its own advertises the address it was added
            # with, once the configuration lists it
            me = peers.get(self.id)
            self.transport.advertise = _fmt(me[0]) if me else ""
        self.prune_links()

    def prune_links(self) -> None:
        """Close links to addresses neither the group nor the federation uses any more."""
        if self.transport is None:
            return
        keep = {a[0] for n, a in self.peers.items() if n != self.id}
        keep |= set(self.announced.values())
        keep |= self.federation.peer_addresses()
        self.transport.keep_only(keep)

    # ------------------------------------------------------------ messages

    def _send(self, dst: str, msg: Any) -> None:
        assert self.transport is not None
        if isinstance(msg, SYNC_MESSAGES):
            self.federation.send(dst, msg)
            return
        peer = self.peers.get(dst)
        addr = peer[0] if peer is not None else self.announced.get(dst)
        if addr is not None:
            self.transport.send(addr, msg)

    def _deliver(self, hello: Hello, msg: Any) -> None:
        assert self.driver is not None
        if isinstance(msg, SYNC_MESSAGES):
            # a replica is named by the address it listens on (how the federation file names
            # it); one that does not say cannot be answered
            if hello.peer:
                self.driver.deliver(hello.peer, msg)
        else:
            self.driver.deliver(hello.node, msg)

    def _hello(self, hello: Hello) -> None:
        if hello.peer and hello.node not in self.peers:
            try:
                self.announced[hello.node] = split_addr(hello.peer)
            except ValueError:
                pass

    def _peer_unreachable(self, node: str | None, addr: Addr | None) -> None:
        """A link to a group member broke: tell the member (by id, or every member at that
        address)."""
        if self.driver is None:
            return
        members = {node} if node is not None and node in self.peers else set()
        if addr is not None:
            members |= {n for n, a in self.peers.items() if a[0] == addr}
        for m in members - {self.id}:
            self.driver.inject(functools.partial(self._unreachable, m))

    def _unreachable(self, member: str, now: float) -> Ready:
        return self.machine.on_peer_unreachable(now, member)

    async def submit(self, req: Any) -> Any:
        assert self.driver is not None
        try:
            reply: Any = await self.driver.request(req, self.settings.request_timeout_s)
        except TimeoutError:
            return Reply(UNKNOWN, detail="timed out waiting for the group")
        return reply

    def conflict_engine(self) -> ConflictEngine:
        return self.machine.conflicts

    def home_urls(self, region: str) -> list[str]:
        return self.federation.home_urls(region)

    # ------------------------------------------------------------ status

    @property
    def leader(self) -> str | None:
        return self.soft.leader

    def leader_http(self) -> tuple[str, int] | None:
        lead = self.soft.leader
        if lead is None or lead == self.id or lead not in self.peers:
            return None
        return self.peers[lead][1]

    def is_leader(self) -> bool:
        return self.soft.role == LEADER

    # ------------------------------------------------------------ what the wire API needs

    def wire_driver(self) -> Driver | None:
        return self.driver

    def leader_wire(self) -> str | None:
        """host:port of the leader's wire API (its HTTP address plus the group's offset)."""
        lead = self.soft.leader
        offset = self.settings.wire_port_offset
        if lead is None or lead not in self.peers or not offset:
            return None
        host, port = self.peers[lead][1]
        return f"{host}:{port + offset}"

    def leaderless(self) -> bool:
        return self.status().leaderless

    def request_timeout_s(self) -> float:
        return self.settings.request_timeout_s

    def max_inflight(self) -> int:
        return self.settings.max_inflight_requests

    def status(self) -> GroupStatus:
        """The group status document (``/v1/cluster``), with what only the node knows."""
        peers = {
            n: PeerAddresses(peer=_fmt(a[0]), http=_fmt(a[1]))
            for n, a in sorted(self.peers.items())
        }
        return self.member.status().model_copy(
            update={"rejoining": self.rejoining, "peers": peers, "consistency": self.consistency}
        )

    def refresh_metrics(self) -> None:
        m, st = self.metrics, self.member.status()
        m.term.set(st.term)
        m.commit.set(st.commit)
        m.applied.set(st.applied)
        m.is_leader.set(1 if st.role == LEADER else 0)
        m.count_elections(st.elections)
        self.federation.refresh_metrics()

    # ------------------------------------------------------------ running

    async def run(self) -> None:
        s = self.settings
        me = self.peers.get(self.id)
        peer_listen = split_addr(s.peer_listen) if s.peer_listen else (me[0] if me else None)
        http_listen = split_addr(s.http_listen) if s.http_listen else (me[1] if me else None)
        if peer_listen is None or http_listen is None:
            missing = " and ".join(
                flag
                for flag, got in (("--peer-listen", peer_listen), ("--http-listen", http_listen))
                if got is None
            )
            raise SystemExit(
                f"{self.id}: not among --peers, so it starts as a joiner (empty, waiting to be "
                f"added) and needs {missing} (NOVACRON_PEER_LISTEN / NOVACRON_HTTP_LISTEN): "
                "where to listen cannot come from --peers"
            )
        loop = asyncio.get_running_loop()
        self.machine.wall_offset = time.time() - loop.time()
        server_ssl, client_ssl = tls_contexts(s.tls_cert, s.tls_key, s.tls_ca)
        self.transport = Transport(
            self.id,
            self._deliver,
            accept=self.machine.peer_messages,
            server_ssl=server_ssl,
            client_ssl=client_ssl,
            on_unreachable=self._peer_unreachable,
            on_hello=self._hello,
            advertise=self.federation.fed_id if ":" in self.federation.fed_id else "",
        )
        self.driver = Driver(
            self.machine, self.storage, self._send, self.metrics, coalesce=self.machine.coalesce
        )
        self.driver.after_persist = self._after_persist
        await self.transport.start(*peer_listen)
        # no automatic re-send (runtime/forward.py); spans + traceparent on proxied requests
        self.http = forward_session(s.request_timeout_s, trace_configs=client_trace_configs())
        runner = web.AppRunner(build_app(self, self.federation.routes), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, http_listen[0], http_listen[1])
        await site.start()
        wire: WireServer | None = None
        if s.wire_port_offset:
            # plain TCP, as the HTTP API: the --tls-* files are the peers' mutual TLS, and a
            # client holding a peer certificate would be a peer
            wire = WireServer(self)
            await wire.start(http_listen[0], http_listen[1] + s.wire_port_offset)
        stop_on_signals(loop, self.stopping.set)
        freeze_startup_heap()  # serving from here on: start-up objects leave the gc's scans
        # monotonic time, as on role changes: benchmarks/raft.py times restart-to-leader from
        # the last member listening
        log.info(
            "node %s: peers on %s, http on %s, wire on %s; listening at %.6f",
            self.id,
            peer_listen,
            http_listen,
            http_listen[1] + s.wire_port_offset if s.wire_port_offset else "off",
            time.monotonic(),
        )
        driver_task = asyncio.create_task(self.driver.run())
        watch_task = asyncio.create_task(self.federation.watch())
        stop_task = asyncio.create_task(self.stopping.wait())
        await asyncio.wait({driver_task, stop_task}, return_when=asyncio.FIRST_COMPLETED)
        # Clean shutdown: stop taking requests, let the driver finish its batch, flush disk.
        watch_task.cancel()
        if wire is not None:
            await wire.close()
        self.driver.stop()
        await runner.cleanup()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(driver_task, 2.0)
        if driver_task.done() and driver_task.exception() is not None:
            raise driver_task.exception()  # type: ignore[misc]
        await self.transport.close()
        await self.http.close()
        self.storage.close()


def _write_marker(path: Path, fsync: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.write(b"lost state; waiting to be removed and re-added as a learner\n")
        f.flush()
        if fsync:
            os.fsync(f.fileno())
    if fsync:
        _fsync_dir(path.parent)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fmt(addr: Addr) -> str:
    return f"{addr[0]}:{addr[1]}"


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
    except (CorruptLogError, UnknownProtocol, UnsupportedSetting) as e:
        log.error("%s", e)
        raise SystemExit(2) from None
    await server.run()
