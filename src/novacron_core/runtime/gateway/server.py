"""The ``novacron gateway`` process: listeners, the balancer, discovery, health probes,
timers, and a clean shutdown.

The balancer (``novacron_core.balancing``) decides; this process performs: it drives the
balancer's clock (``on_tick`` at the time it asks for), runs the probes it schedules,
reports every request's outcome, and closes connections to backends it removed.

SIGTERM/SIGINT: ``/readyz`` turns 503, the listeners close, idle keep-alive connections
close, requests in flight finish (up to ``shutdown_timeout_s``), then the process exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import random
import ssl
import time
from collections.abc import Callable
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from novacron_core.balancing import BackendSpec, Balancer, Distances, StaticCoordinates
from novacron_core.runtime.aio import wait_set
from novacron_core.runtime.gateway.checks import probe
from novacron_core.runtime.gateway.config import GatewayConfig, split_host_port
from novacron_core.runtime.gateway.discovery import Discovery
from novacron_core.runtime.gateway.downstream import (
    NOT_APPLIED,
    ClientConn,
    Limits,
    Request,
)
from novacron_core.runtime.gateway.fastpath import FastPath, admin_fast
from novacron_core.runtime.gateway.federation import FederationAdapter, HomeRegions
from novacron_core.runtime.gateway.metrics import GatewayCollector, Stats, registry
from novacron_core.runtime.gateway.proxy import Proxy
from novacron_core.runtime.gateway.routes import Route, classify
from novacron_core.runtime.gateway.upstream import UpstreamPool
from novacron_core.runtime.heap import freeze_startup_heap
from novacron_core.runtime.signals import stop_on_signals

log = logging.getLogger("novacron.gateway")
MAX_PROBES_AT_ONCE = 64


class Gateway:
    def __init__(self, cfg: GatewayConfig) -> None:
        self.cfg = cfg
        self.loop = asyncio.get_running_loop()
        self.log = log
        self.home_region = cfg.home()
        self.stats = Stats()
        coords = {(a, b): rtt for a, row in cfg.coordinates.items() for b, rtt in row.items()}
        self.distances = Distances(cfg.locations(), StaticCoordinates(coords))
        self.balancer = Balancer(cfg.pool_spec(), self.home_region, self.distances, random.Random())
        self.upstream_ssl: ssl.SSLContext | None = None
        if cfg.upstream_ca:
            self.upstream_ssl = ssl.create_default_context(cafile=cfg.upstream_ca)
        self.pool = UpstreamPool(
            cfg.connect_timeout_s,
            cfg.upstream_idle_s,
            cfg.max_idle_per_backend,
            self.upstream_ssl,
            self._idle_lost,
        )
        self.fed = FederationAdapter(cfg.api_port)
        self.homes = HomeRegions()
        self.discovery = Discovery(self, [r.seed() for r in cfg.regions], cfg.discovery_interval_s)
        self.limits = Limits(
            max_body_bytes=cfg.max_body_bytes,
            header_timeout_s=cfg.header_timeout_s,
            keepalive_timeout_s=cfg.keepalive_timeout_s,
        )
        self.replay_limit = cfg.replay_limit_bytes
        self.affinity_header = (
            cfg.affinity_header.lower().encode() if cfg.affinity != "none" else None
        )
        self.proxy = Proxy(self)
        self.fast = FastPath(self, self.proxy)
        self.conns: set[ClientConn] = set()
        self.inflight = 0
        self.stopping = False
        self.stopped = asyncio.Event()
        self.servers: list[asyncio.Server] = []
        self.tasks: list[asyncio.Task[None]] = []
        self._wake = asyncio.Event()
        self._probes = asyncio.Semaphore(MAX_PROBES_AT_ONCE)
        self._probe_tasks: set[asyncio.Task[None]] = set()
        self.started_at = time.time()
        self.metrics = registry(GatewayCollector(self.stats, self.loop.time, self._live))

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        raise_fd_limit()
        ctx = None
        if self.cfg.tls_cert and self.cfg.tls_key:
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(self.cfg.tls_cert, self.cfg.tls_key)
        host, port = split_host_port(self.cfg.listen, "listen")
        self.servers.append(
            await self.loop.create_server(
                lambda: ClientConn(self, self.fast, self.proxy.handle, self.limits),
                host,
                port,
                ssl=ctx,
                backlog=4096,
                reuse_address=True,
            )
        )
        if self.cfg.admin_listen:
            ahost, aport = split_host_port(self.cfg.admin_listen, "admin_listen")
            admin = admin_fast(self)
            self.servers.append(
                await self.loop.create_server(
                    lambda: ClientConn(self, admin, self._serve_admin, self.limits),
                    ahost,
                    aport,
                    backlog=256,
                    reuse_address=True,
                )
            )
        self.discovery.start()
        self.tasks.append(asyncio.create_task(self._timers()))
        self.tasks.append(asyncio.create_task(self._sweep()))
        log.info(
            "gateway listening on %s (admin %s), home region %s, regions %s",
            self.cfg.listen,
            self.cfg.admin_listen or "-",
            self.home_region,
            ", ".join(r.name for r in self.cfg.regions),
        )

    def bound_ports(self) -> list[int]:
        return [s.sockets[0].getsockname()[1] for s in self.servers if s.sockets]

    async def stop(self) -> None:
        """Drain: refuse new connections, finish what is in flight, then close."""
        if self.stopping:
            return
        self.stopping = True
        log.info("gateway stopping: draining %d requests in flight", self.inflight)
        for s in self.servers:
            s.close()
        for c in list(self.conns):
            if c.state == "idle":
                c.close()
        deadline = self.loop.time() + self.cfg.shutdown_timeout_s
        while self.inflight > 0 and self.loop.time() < deadline:  # noqa: ASYNC110 (bounded)
            await asyncio.sleep(0.02)
        for c in list(self.conns):
            c.abort() if c.state in ("busy", "responding") else c.close()
        for t in self.tasks + list(self._probe_tasks):
            t.cancel()
        for t in self.tasks + list(self._probe_tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        await self.discovery.close()
        self.pool.close()
        for s in self.servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(s.wait_closed(), 1.0)
        log.info("gateway stopped (%d requests left when the deadline hit)", self.inflight)
        self.stopped.set()

    # ------------------------------------------------------------ connections

    def admit_connection(self, conn: ClientConn) -> bool:
        if self.stopping or len(self.conns) >= self.cfg.max_connections:
            self.stats.refuse("max_connections")
            return False
        self.conns.add(conn)
        return True

    def forget_connection(self, conn: ClientConn) -> None:
        self.conns.discard(conn)

    async def _sweep(self) -> None:
        """Once a second: close keep-alive connections idle too long, answer 408 to
        heads that take too long (slowloris), close idle upstream connections."""
        lim = self.limits
        while True:
            await asyncio.sleep(1.0)
            now = self.loop.time()
            for c in list(self.conns):
                if c.state == "idle" and now - c.last_active > lim.keepalive_timeout_s:
                    c.close()
                elif c.state == "head" and now - c.last_active > lim.header_timeout_s:
                    c.send_problem(408, "the request head took too long to arrive", NOT_APPLIED)
                    self.stats.rejected(408)
                    c.close()
            self.pool.sweep(now)

    # ------------------------------------------------------------ balancer plumbing

    def set_members(self, region: str, specs: list[BackendSpec], leader: str | None) -> None:
        now = self.loop.time()
        self.balancer.set_members(now, region, specs)
        self.balancer.set_leader(region, leader)
        self._collect_gone()
        self._wake.set()

    def _collect_gone(self) -> None:
        for g in self.balancer.take_gone():
            self.pool.drop_backend(g.backend.id, abort=g.aborted)
            if g.aborted:
                log.warning(
                    "backend %s removed with %d requests still in flight (drain deadline)",
                    g.backend.id,
                    g.in_flight,
                )
            else:
                log.info("backend %s drained and removed", g.backend.id)

    def _idle_lost(self, backend_id: str) -> None:
        self.balancer.hint_down(self.loop.time(), backend_id)
        self._wake.set()

    async def _timers(self) -> None:
        while True:
            now = self.loop.time()
            for b in self.balancer.probes_due(now):
                t = asyncio.create_task(self._probe(b.id))
                self._probe_tasks.add(t)
                t.add_done_callback(self._probe_tasks.discard)
            wake = self.balancer.on_tick(now)
            self._collect_gone()
            delay = 1.0 if wake is None else min(1.0, max(0.0, wake - now))
            await wait_set(self._wake, delay)
            self._wake.clear()

    async def _probe(self, backend_id: str) -> None:
        b = self.balancer.by_id.get(backend_id)
        if b is None:
            return
        async with self._probes:
            verdict, detail = await probe(b, self.balancer.spec.health, self.upstream_ssl)
        self.balancer.probe_result(self.loop.time(), backend_id, verdict, detail)
        self._wake.set()

    def regions_by_distance(self, origin: str | None) -> list[str]:
        return self.distances.rank(origin or self.home_region, None, self.balancer.regions())

    # ------------------------------------------------------------ own endpoints

    def _live(self) -> dict[str, Any]:
        return {
            "connections": len(self.conns),
            "inflight": self.inflight,
            "backends": self.balancer.describe(self.loop.time()),
        }

    def ready(self) -> tuple[bool, str]:
        if self.stopping:
            return False, "shutting down"
        health = self.balancer.region_health()
        if not any(r["available"] for r in health.values()):
            return False, "no available backend in any region"
        return True, "ok"

    async def _serve_admin(self, conn: ClientConn, req: Request) -> None:
        route = classify(req.method, req.path)
        status = self.serve_own(conn, req, route)
        now = self.loop.time()
        self.stats.request(now, "admin_port", status, now - req.started)

    def serve_own(self, conn: ClientConn, req: Request, route: Route) -> int:
        if route.kind != "gateway":
            conn.send_problem(
                404, f"{req.path}: this port serves only the gateway's own endpoints", NOT_APPLIED
            )
            return 404
        if req.method not in ("GET", "HEAD"):
            conn.send_problem(405, f"{req.path} takes GET", NOT_APPLIED)
            return 405
        if req.path == "/healthz":
            conn.send_json(200, {"ok": True})
            return 200
        if req.path == "/readyz":
            ok, why = self.ready()
            conn.send_json(200 if ok else 503, {"ready": ok, "reason": why})
            return 200 if ok else 503
        if req.path == "/metrics":
            body = generate_latest(self.metrics)
            conn.send_simple(200, body, [(b"Content-Type", CONTENT_TYPE_LATEST.encode())])
            return 200
        now = self.loop.time()
        conn.send_json(
            200,
            {
                "home_region": self.home_region,
                "now_monotonic": now,
                "regions": self.balancer.region_health(),
                "leaders": self.balancer.leaders,
                "backends": self.balancer.describe(now),
                "upstream_connections": self.pool.counts(),
                "client_connections": len(self.conns),
                "inflight": self.inflight,
                "known_vm_homes": len(self.homes),
                "discovery_last_answer_s": {
                    r: round(now - t, 3) for r, t in self.discovery.answered.items()
                },
            },
        )
        return 200


def tune_gc() -> None:
    """Requests allocate short-lived objects freed by reference counting; the cyclic
    collector mostly rescans what the process built at start (modules, config): frozen
    out of its scans, and run less often, it stops adding pauses to the tail latency."""
    freeze_startup_heap()
    gen0, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(max(gen0, 20_000), gen1, gen2)


def raise_fd_limit() -> int:
    """Every client connection costs two descriptors (client, backend): take the hard
    limit as the soft one, as servers do (systemd and Kubernetes set a high hard limit)."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard == resource.RLIM_INFINITY:
            hard = 1 << 20
        if soft < hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        return hard
    except (ImportError, ValueError, OSError):
        return 0


STOP_GRACE_S = 5.0  # after the drain deadline, for cancelling and closing what is left


class StopStuck(RuntimeError):
    """stop() did not finish in time. ``on_stuck`` (the CLI: exit 1 at once) runs first:
    asyncio's own exit would wait on the stuck tasks again."""


async def serve(
    cfg: GatewayConfig,
    ready: asyncio.Event | None = None,
    on_stuck: Callable[[], None] | None = None,
) -> None:
    """Run until SIGTERM/SIGINT, then drain and return."""
    gw = Gateway(cfg)
    await gw.start()
    tune_gc()  # the process's own heap: not in start(), which tests run in their process
    stop = asyncio.Event()
    stop_on_signals(gw.loop, stop.set)
    if ready is not None:
        ready.set()
    await stop.wait()
    # The drain is bounded by shutdown_timeout_s; the rest of stop() (cancelling probes and
    # discovery, closing sessions) must be quick. If it is not, a gateway would outlive its
    # supervisor (seen once: a demo killed with -9, its nodes' namespaces gone): say what is
    # stuck and let the caller end the process.
    stopping = asyncio.ensure_future(gw.stop())
    done, _ = await asyncio.wait({stopping}, timeout=cfg.shutdown_timeout_s + STOP_GRACE_S)
    if not done:
        stuck = [
            repr(t.get_coro())
            for t in asyncio.all_tasks()
            if t is not asyncio.current_task() and not t.done()
        ]
        log.error(
            "gateway stop did not finish %.0f s after its drain deadline; stuck: %s",
            STOP_GRACE_S,
            "; ".join(stuck) or "nothing",
        )
        if on_stuck is not None:
            on_stuck()
        raise StopStuck(stuck)
