"""The agent process: the sans-IO :class:`AgentCore` driven by asyncio (UDP probes, TCP
connect probes and bandwidth transfers), route recomputation in a worker thread, tunnels
reconciled when privileged and configured, and the HTTP API."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from pathlib import Path
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge, generate_latest

from novacron_core.machine import Ready
from novacron_core.routing.agent import AgentCore, Ping, Pong, ProbeConfig
from novacron_core.routing.qos import QoS
from novacron_core.runtime.agent.config import AgentConfig, split_hostport
from novacron_core.runtime.agent.wire import WireError, decode, encode
from novacron_core.runtime.aio import wait_set
from novacron_core.runtime.signals import stop_on_signals
from novacron_core.tunnels.manager import TunnelError, TunnelManager
from novacron_core.tunnels.spec import Kind, TunnelSpec, load_keys, tunnel_name

log = logging.getLogger("novacron.agent")
RECOMPUTE_EVERY = 1.0  # seconds between recomputations caused by metric drift alone
CAP_NET_ADMIN = 12


def privileged() -> bool:
    """Whether this process may change network interfaces (root or CAP_NET_ADMIN)."""
    if os.geteuid() == 0:
        return True
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("CapEff:"):
                return bool(int(line.split()[1], 16) >> CAP_NET_ADMIN & 1)
    except OSError:
        pass
    return False


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, agent: Agent) -> None:
        self.agent = agent

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self.agent.datagram(data, (str(addr[0]), int(addr[1])))


class Agent:
    def __init__(self, cfg: AgentConfig) -> None:
        self.cfg = cfg
        probe = ProbeConfig(
            interval=cfg.probe.interval_ms / 1000,
            min_timeout=cfg.probe.min_timeout_ms / 1000,
            max_timeout=cfg.probe.max_timeout_ms / 1000,
            down_after=cfg.probe.down_after,
        )
        self.core = AgentCore(
            cfg.name, cfg.region, [(p.name, p.region or p.name) for p in cfg.peers], probe
        )
        self.addr = {p.name: split_hostport(p.address) for p in cfg.peers}
        self.mode = {p.name: p.mode for p in cfg.peers}
        self.by_addr = {v: k for k, v in self.addr.items()}
        self.udp: asyncio.DatagramTransport | None = None
        self.stopping = asyncio.Event()
        self.wake = asyncio.Event()
        self.tasks: list[asyncio.Task[None]] = []
        self.dropped = 0
        self.recomputes = 0
        self.last_compute = -1e9
        self.tunnels: TunnelManager | None = None
        self.tunnel_status = "not configured" if cfg.tunnels.kind == "none" else "pending"
        self.runner: web.AppRunner | None = None
        self.next_wake = 0.0
        self.failed = ""
        self._metrics()

    # ------------------------------------------------------------------ the event loop side

    def now(self) -> float:
        return time.monotonic()

    def carry(self, ready: Ready) -> None:
        for dst, msg in ready.messages:
            if self.mode.get(dst) == "tcp" and isinstance(msg, Ping):
                self._spawn(self._tcp_probe(dst, msg))
                continue
            addr = self.addr.get(dst)
            if addr is None or self.udp is None:
                continue
            try:
                self.udp.sendto(encode(msg), addr)
            except OSError:
                pass  # no route (a cut): the probe is simply lost
        if ready.wake_at is not None:
            self.next_wake = min(self.next_wake, ready.wake_at)
            self.wake.set()

    def datagram(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            msg = decode(data)
        except WireError:
            self.dropped += 1
            return
        if msg.src not in self.addr and addr not in self.by_addr:
            self.dropped += 1  # answer only the peers we were given (no reflection)
            return
        try:
            ready = self.core.on_message(self.now(), msg.src, msg)
        except ValueError as e:  # a coordinate or advert the topology refuses
            self.dropped += 1
            log.info("dropped a datagram from %s: %s", msg.src, e)
            return
        self.carry(ready)

    async def _tcp_probe(self, dst: str, ping: Ping) -> None:
        """A peer without an agent: the TCP handshake's round trip is the sample."""
        host, port = self.addr[dst]
        timeout = self.cfg.probe.max_timeout_ms / 1000
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
        except (OSError, TimeoutError):
            return  # counted lost when its timeout passes
        now = self.now()
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        region = self.core.peers[dst].region
        self.carry(self.core.on_message(now, dst, Pong(ping.seq, ping.sent, dst, region)))

    async def _ticker(self) -> None:
        self.next_wake = self.now()
        self.carry(self.core.on_start(self.now()))
        while not self.stopping.is_set():
            delay = max(0.0, self.next_wake - self.now())
            self.wake.clear()
            await wait_set(self.wake, min(delay, 0.5))
            if self.now() >= self.next_wake:
                self.next_wake = self.now() + 0.5
                self.carry(self.core.on_tick(self.now()))

    async def _recompute(self) -> None:
        router = self.core.router
        while not self.stopping.is_set():
            now = self.now()
            if router.due and (router.table.stale or now - self.last_compute >= RECOMPUTE_EVERY):
                graph = router.snapshot()
                table = await asyncio.to_thread(router.compute, graph)
                router.install(table)
                self.recomputes += 1
                self.last_compute = now
            await asyncio.sleep(0.05)

    async def _bandwidth(self) -> None:
        """Every ``bandwidth_interval_s``, time a bulk transfer to each agent peer."""
        every, size = self.cfg.probe.bandwidth_interval_s, self.cfg.probe.bandwidth_bytes
        chunk = b"\0" * 65536
        while not self.stopping.is_set():
            for peer, mode in self.mode.items():
                if mode != "agent" or self.stopping.is_set():
                    continue
                host, port = self.addr[peer]
                try:
                    start = self.now()
                    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 5)
                    writer.write(size.to_bytes(8, "big"))
                    left = size
                    while left > 0:
                        writer.write(chunk[: min(left, len(chunk))])
                        left -= min(left, len(chunk))
                        await writer.drain()
                    await asyncio.wait_for(reader.readexactly(1), 30)  # the receiver has it all
                    took = self.now() - start
                    writer.close()
                    mbps = size * 8 / took / 1e6
                    self.core.topology.observe_bandwidth(self.cfg.name, peer, mbps, self.now())
                except (OSError, TimeoutError, asyncio.IncompleteReadError) as e:
                    log.info("bandwidth sample to %s failed: %s", peer, e)
            await wait_set(self.stopping, every)

    async def _sink(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """The receiving end of a bandwidth sample: read the announced bytes, answer one."""
        try:
            size = int.from_bytes(await asyncio.wait_for(reader.readexactly(8), 5), "big")
            if size > self.cfg.probe.bandwidth_bytes * 4:
                return
            while size > 0:
                data = await asyncio.wait_for(reader.read(min(size, 1 << 16)), 30)
                if not data:
                    return
                size -= len(data)
            writer.write(b"\1")
            await writer.drain()
        except (OSError, TimeoutError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    # ------------------------------------------------------------------ tunnels

    def tunnel_specs(self) -> list[TunnelSpec]:
        t = self.cfg.tunnels
        private, pubs = "", dict[str, str]()
        if t.kind == "none":
            return []
        kind: Kind = t.kind
        if t.kind == "wireguard":
            assert t.keys_dir is not None
            private, pubs = load_keys(t.keys_dir, self.cfg.name)
        specs = []
        for link in t.links:
            extra: dict[str, Any] = {}
            if t.kind == "wireguard":
                if link.peer not in pubs:
                    raise TunnelError(f"tunnels.keysDir: no {link.peer}.pub in {t.keys_dir}")
                extra = {"private_key": private, "peer_public_key": pubs[link.peer]}
            specs.append(
                TunnelSpec(
                    tunnel_name(kind, link.peer),
                    kind,
                    link.local,
                    link.remote,
                    link.address,
                    link.key,
                    link.port,
                    link.remote_port,
                    peer=link.peer,
                    **extra,
                )
            )
        return specs

    async def _tunnels(self) -> None:
        t = self.cfg.tunnels
        if t.kind == "none":
            return
        if not privileged():
            self.tunnel_status = "skipped: not privileged (measure and route only)"
            log.warning(
                "tunnels are configured but this process lacks NET_ADMIN: %s", self.tunnel_status
            )
            return
        self.tunnels = TunnelManager(t.state_dir)
        while not self.stopping.is_set():
            try:
                out = await asyncio.to_thread(self.tunnels.reconcile, self.tunnel_specs())
                self.tunnel_status = "ok"
                if out.changed:
                    log.info("tunnels reconciled: %s", out.as_dict())
            except (TunnelError, ValueError, OSError) as e:
                self.tunnel_status = f"error: {e}"
                log.error("tunnels: %s", e)
            await wait_set(self.stopping, t.reconcile_s)

    # ------------------------------------------------------------------ life

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.append(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        if task in self.tasks:
            self.tasks.remove(task)
        if not task.cancelled() and task.exception() is not None and not self.stopping.is_set():
            # a background loop must not die silently: say so and stop (the pod restarts)
            log.error("agent task failed", exc_info=task.exception())
            self.failed = repr(task.exception())
            self.stopping.set()

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        host, port = split_hostport(self.cfg.listen)
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _Udp(self), local_addr=(host, port)
        )
        self.udp = transport
        self.tcp = await asyncio.start_server(self._sink, host, port)
        self.runner = web.AppRunner(self.app(), access_log=None)
        await self.runner.setup()
        hh, hp = split_hostport(self.cfg.http)
        await web.TCPSite(self.runner, hh, hp).start()
        for coro in (self._ticker(), self._recompute(), self._tunnels()):
            self._spawn(coro)
        if self.cfg.probe.bandwidth_interval_s > 0:
            self._spawn(self._bandwidth())

    async def stop(self, remove_tunnels: bool) -> None:
        self.stopping.set()
        self.wake.set()
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        if self.udp is not None:
            self.udp.close()
        self.tcp.close()
        if self.runner is not None:
            await self.runner.cleanup()
        if self.tunnels is not None and remove_tunnels:
            removed = await asyncio.to_thread(self.tunnels.remove_all)
            log.info("removed tunnels on exit: %s", removed)

    # ------------------------------------------------------------------ HTTP

    def app(self) -> web.Application:
        app = web.Application()
        r = app.router
        r.add_get("/healthz", self.h_healthz)
        r.add_get("/metrics", self.h_metrics)
        r.add_get("/v1/topology", self.h_topology)
        r.add_get("/v1/routes", self.h_routes)
        r.add_get("/v1/coordinates", self.h_coordinates)
        return app

    async def h_healthz(self, _: web.Request) -> web.Response:
        stats = self.core.peer_stats()
        return web.json_response({
            "ok": True, "name": self.cfg.name, "region": self.cfg.region,
            "peers": len(stats), "peers_up": sum(1 for s in stats.values() if s["up"]),
            "tunnels": self.tunnel_status,
        })  # fmt: skip

    async def h_topology(self, _: web.Request) -> web.Response:
        now = self.now()
        body = self.core.topology.as_dict()
        body["me"] = self.cfg.name
        body["peers"] = self.core.peer_stats()
        body["rtt_ms"] = self.core.rtt_matrix()
        body["adverts"] = {
            o: {"seq": lsa.seq, "age_s": round(now - heard, 3)}
            for o, (lsa, heard) in sorted(self.core.lsdb.items())
        }
        return web.json_response(body)

    async def h_routes(self, request: web.Request) -> web.Response:
        table = self.core.router.table
        qos_q = request.query.get("qos")
        dst = request.query.get("dst")
        try:
            qos = QoS.parse(qos_q) if qos_q else None
        except ValueError as e:
            return _problem(422, str(e), "qos")
        if dst is not None and dst not in self.core.topology.members:
            return _problem(404, f"dst: no member named {dst!r}", "dst")
        body = table.as_dict()
        body["routes"] = [
            r
            for r in body["routes"]  # type: ignore[attr-defined]
            if (qos is None or r["qos"] == qos.value) and (dst is None or r["dst"] == dst)
        ]
        body["due"] = self.core.router.due
        body["reroutes"] = self.core.reroutes
        body["recomputes"] = self.recomputes
        body["events"] = [e.as_dict() for e in self.core.events][-64:]
        return web.json_response(body)

    async def h_coordinates(self, request: web.Request) -> web.Response:
        coords = self.core.coords
        body = coords.as_dict()
        body["estimates_ms"] = {n: coords.rtt_ms(n) for n in sorted(coords.known)}
        body["regions"] = {n: m.region for n, m in sorted(self.core.topology.members.items())}
        if "nearest" in request.query:
            cands = [c for c in request.query["nearest"].split(",") if c]
            if not cands:
                return _problem(422, "nearest: a comma-separated list of member names", "nearest")
            body["nearest"] = coords.nearest(cands)
        return web.json_response(body)

    def _metrics(self) -> None:
        self.registry = r = CollectorRegistry()
        self.g_rtt = Gauge(
            "novacron_agent_link_rtt_ms", "Smoothed RTT to a peer", ["peer"], registry=r
        )
        self.g_loss = Gauge("novacron_agent_link_loss", "Smoothed probe loss", ["peer"], registry=r)
        self.g_up = Gauge("novacron_agent_link_up", "1 while the link is up", ["peer"], registry=r)
        self.g_reroutes = Gauge("novacron_agent_reroutes", "Routes moved to a backup", registry=r)
        self.g_recomputes = Gauge(
            "novacron_agent_route_recomputations", "Tables computed", registry=r
        )
        self.g_dropped = Gauge("novacron_agent_datagrams_dropped", "Malformed/unknown", registry=r)
        self.g_tunnels = Gauge("novacron_agent_tunnels_ok", "1 when tunnels reconciled", registry=r)

    async def h_metrics(self, _: web.Request) -> web.Response:
        for peer, s in self.core.peer_stats().items():
            if s["rtt_ms"] is not None:
                self.g_rtt.labels(peer).set(s["rtt_ms"])
            self.g_loss.labels(peer).set(s["loss"] or 0.0)
            self.g_up.labels(peer).set(1 if s["up"] else 0)
        self.g_reroutes.set(self.core.reroutes)
        self.g_recomputes.set(self.recomputes)
        self.g_dropped.set(self.dropped)
        self.g_tunnels.set(1 if self.tunnel_status == "ok" else 0)
        return web.Response(
            body=generate_latest(self.registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )


def _problem(status: int, detail: str, field: str) -> web.Response:
    return web.json_response(
        {"type": "about:blank", "title": "invalid request", "status": status, "detail": detail,
         "field": field},
        status=status, content_type="application/problem+json",
    )  # fmt: skip


async def serve(cfg: AgentConfig, remove_tunnels: bool | None = None) -> None:
    """Run until SIGTERM/SIGINT. Tunnels are kept on exit (traffic goes on across a restart)
    unless ``remove_tunnels`` (default: ``not cfg.tunnels.keep_on_exit``)."""
    agent = Agent(cfg)
    await agent.start()
    loop = asyncio.get_running_loop()
    stop_on_signals(loop, agent.stopping.set)
    print(f"novacron agent {cfg.name} ({cfg.region}): probes on {cfg.listen}, "
          f"HTTP on {cfg.http}, {len(cfg.peers)} peers", flush=True)  # fmt: skip
    await agent.stopping.wait()
    drop = (not cfg.tunnels.keep_on_exit) if remove_tunnels is None else remove_tunnels
    await agent.stop(remove_tunnels=drop)
    print(f"novacron agent {cfg.name}: stopped", flush=True)
