"""The gateway process beside HAProxy, in one run, on loopback.

Backends: HAProxy instances answering a fixed JSON body themselves (``http-request
return``): fast enough that the proxy in front is what is measured, the same for both.
Both proxies get the same three backends, the same checks (HTTP GET /healthz every 1 s,
down after 2 failures, up after 2 successes), keep-alive to the backends, one thread /
one event loop, and the same ``wrk`` load (1 thread, 32 connections). Requests per core
is requests / CPU seconds the proxy process used (from /proc), so a proxy that idles
waiting for the load generator is not penalised and neither is favoured by the other
processes sharing the machine.

Then: failover (kill -9 one backend under load; time from the kill to the last request
the gateway sent it, read from its ``/v1/backends``), a region's death (its traffic to the
next region), and 10,000 keep-alive client connections (resident memory per connection).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

BACKEND_CFG = """global
    nbthread 1
    maxconn 4000
defaults
    mode http
    timeout connect 1s
    timeout client 30s
    timeout server 30s
frontend static
{binds}
    http-request return status 200 content-type application/json string "{{\\"ok\\":true}}"
"""

PROXY_CFG = """global
    nbthread 1
    maxconn 4000
defaults
    mode http
    timeout connect 1s
    timeout client 30s
    timeout server 30s
    option http-keep-alive
frontend fe
    bind 127.0.0.1:{port}
    default_backend be
backend be
    balance leastconn
    option httpchk GET /healthz
    http-check expect status 200
    default-server check inter 1s fall 2 rise 2
    http-reuse always
{servers}
"""


def _ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _get(url: str, timeout: float = 2.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return bytes(r.read())


def _wait_http(url: str, limit_s: float = 30.0) -> None:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            _get(url, 1.0)
            return
        time.sleep(0.05)
    raise TimeoutError(f"{url} did not answer within {limit_s}s")


class Procs:
    """Processes of one benchmark run, all stopped (and the temp dir removed) at the end."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="novacron-gwbench-"))
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        log = open(self.dir / f"{name}.log", "wb")  # noqa: SIM115 - the child owns it
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        p = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
        log.close()
        self.procs[name] = p
        return p

    def haproxy(self, name: str, cfg: str) -> subprocess.Popen[bytes]:
        path = self.dir / f"{name}.cfg"
        path.write_text(cfg)
        return self.start(name, ["haproxy", "-f", str(path), "-db"])

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        p = self.procs.pop(name)
        if p.poll() is None:
            p.send_signal(sig)
        p.wait(10)

    def close(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                p.terminate()
        for p in self.procs.values():
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
        shutil.rmtree(self.dir, ignore_errors=True)


@contextlib.contextmanager
def procs() -> Iterator[Procs]:
    p = Procs()
    try:
        yield p
    finally:
        p.close()


def static_backend(ps: Procs, name: str, ports: list[int]) -> None:
    binds = "\n".join(f"    bind 127.0.0.1:{p}" for p in ports)
    ps.haproxy(name, BACKEND_CFG.format(binds=binds))
    for p in ports:
        _wait_http(f"http://127.0.0.1:{p}/healthz")


def gateway(
    ps: Procs,
    name: str,
    port: int,
    admin: int,
    regions: dict[str, list[int]],
    loop: str = "auto",
) -> int:
    argv = [sys.executable, "-m", "novacron_core.cli", "gateway", "--loop", loop]
    argv += ["--listen", f"127.0.0.1:{port}", "--admin-listen", f"127.0.0.1:{admin}"]
    for region, ports in regions.items():
        argv += ["--backend", f"{region}=" + ",".join(f"127.0.0.1:{p}" for p in ports)]
    argv += ["--log-level", "warning"]
    p = ps.start(name, argv)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            if b'"ready": true' in _get(f"http://127.0.0.1:{admin}/readyz", 1.0):
                return p.pid
        time.sleep(0.05)
    raise TimeoutError(f"gateway not ready; log {ps.dir / (name + '.log')}")


def wrk(url: str, seconds: float, pid: int, connections: int = 32) -> dict[str, float]:
    cpu0 = _cpu_s(pid)
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds:.0f}s", "--latency", url],
        capture_output=True,
        text=True,
        timeout=seconds + 30,
    ).stdout
    cpu = _cpu_s(pid) - cpu0
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)

    def pct(label: str) -> float:
        m = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        if m is None:
            return math_nan()
        scale = {"us": 1e-3, "ms": 1.0, "s": 1000.0}[m.group(2)]
        return float(m.group(1)) * scale

    return {
        "rps": rps,
        "p50_ms": pct("50"),
        "p99_ms": pct("99"),
        "cpu_s": cpu,
        "rps_per_core": total / cpu if cpu > 0 else 0.0,
        "non_2xx": float(errors.group(1)) if errors else 0.0,
    }


def math_nan() -> float:
    return float("nan")


def throughput(quick: bool) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    seconds = 4.0 if quick else 10.0
    rounds = 1 if quick else 2
    with procs() as ps:
        be = _ports(3)
        static_backend(ps, "backends", be)
        hp, gp, ga = _ports(3)
        servers = "\n".join(f"    server s{i} 127.0.0.1:{p}" for i, p in enumerate(be))
        h = ps.haproxy("haproxy", PROXY_CFG.format(port=hp, servers=servers))
        _wait_http(f"http://127.0.0.1:{hp}/v1/kv/x")
        g = gateway(ps, "gateway", gp, ga, {"local": be})
        ap, aa = _ports(2)
        plain = gateway(ps, "gateway-asyncio", ap, aa, {"local": be}, loop="asyncio")
        ours: list[dict[str, float]] = []
        theirs: list[dict[str, float]] = []
        stock: list[dict[str, float]] = []
        for _ in range(rounds):  # interleaved, so that all see the same neighbours
            ours.append(wrk(f"http://127.0.0.1:{gp}/v1/kv/x", seconds, g))
            theirs.append(wrk(f"http://127.0.0.1:{hp}/v1/kv/x", seconds, h.pid))
            stock.append(wrk(f"http://127.0.0.1:{ap}/v1/kv/x", seconds, plain))
    o = {k: statistics.mean(r[k] for r in ours) for k in ours[0]}
    t = {k: statistics.mean(r[k] for r in theirs) for k in theirs[0]}
    a = {k: statistics.mean(r[k] for r in stock) for k in stock[0]}
    figures = {f"proxy.{k}": round(v, 2) for k, v in o.items()}
    # the same gateway on the standard asyncio loop: what uvloop is worth here
    figures["proxy_asyncio_loop.rps_per_core"] = round(a["rps_per_core"], 2)
    figures["proxy_asyncio_loop.p99_ms"] = round(a["p99_ms"], 2)
    peers = {f"haproxy.{k}": round(v, 2) for k, v in t.items()}
    ratios = {
        "proxy.rps_per_core_vs_haproxy": round(o["rps_per_core"] / t["rps_per_core"], 3),
        "proxy.rps_vs_haproxy": round(o["rps"] / t["rps"], 3),
        "proxy.p99_vs_haproxy": round(o["p99_ms"] / t["p99_ms"], 3),
    }
    return figures, peers, ratios


async def _load(url: str, stop: asyncio.Event, seen: list[tuple[float, int, str]]) -> None:
    import aiohttp

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:

        async def one() -> None:
            while not stop.is_set():
                try:
                    async with http.post(url, data=b"{}") as r:
                        await r.read()
                        seen.append(
                            (time.monotonic(), r.status, r.headers.get("X-Novacron-Backend", ""))
                        )
                except aiohttp.ClientError:
                    seen.append((time.monotonic(), 0, ""))

        await asyncio.gather(*(one() for _ in range(16)))


def _backend_row(admin: int, backend_id: str) -> dict[str, Any]:
    import json

    doc = json.loads(_get(f"http://127.0.0.1:{admin}/v1/backends"))
    return next(b for b in doc["backends"] if b["id"] == backend_id)


def failover(quick: bool) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """kill -9 one of three backends under load (16 clients POSTing /v1/vms, which the
    gateway may not re-send once sent): time from the kill to the last request the
    gateway sent it; errors clients saw. Restart it, wait until it is back, repeat.
    Then kill a whole region (two regions of two backends, creates prefer the first):
    time from the kill until the next region serves its traffic."""
    kills = 5 if quick else 30
    cutoffs: list[float] = []
    errors: list[int] = []
    with procs() as ps:
        be = _ports(3)
        for i, p in enumerate(be):
            static_backend(ps, f"b{i}", [p])
        gp, ga = _ports(2)
        gateway(ps, "gateway", gp, ga, {"local": be})
        loop = asyncio.new_event_loop()
        stop = asyncio.Event()
        seen: list[tuple[float, int, str]] = []
        task = loop.create_task(_load(f"http://127.0.0.1:{gp}/v1/vms", stop, seen))
        loop.run_until_complete(asyncio.sleep(1.0))
        for k in range(kills):
            victim = k % 3
            vid = f"local/127.0.0.1:{be[victim]}"
            n0 = len(seen)
            t_kill = time.monotonic()
            ps.kill(f"b{victim}")
            loop.run_until_complete(asyncio.sleep(1.0))
            row = _backend_row(ga, vid)
            cutoffs.append(max(0.0, (row["last_sent_monotonic"] or t_kill) - t_kill))
            errors.append(sum(1 for _, status, _ in seen[n0:] if status >= 500 or status == 0))
            static_backend(ps, f"b{victim}", [be[victim]])
            deadline = time.monotonic() + 15
            while not _backend_row(ga, vid)["available"] and time.monotonic() < deadline:
                loop.run_until_complete(asyncio.sleep(0.05))
        stop.set()
        loop.run_until_complete(task)
        # a region's death
        ra, rb = _ports(2), _ports(2)
        static_backend(ps, "region-a", ra)
        static_backend(ps, "region-b", rb)
        gp2, ga2 = _ports(2)
        gateway(ps, "gateway2", gp2, ga2, {"us-east1": ra, "us-west1": rb})
        stop2 = asyncio.Event()
        seen2: list[tuple[float, int, str]] = []
        task2 = loop.create_task(_load(f"http://127.0.0.1:{gp2}/v1/vms", stop2, seen2))
        loop.run_until_complete(asyncio.sleep(1.0))
        t_region = time.monotonic()
        ps.kill("region-a")
        loop.run_until_complete(asyncio.sleep(2.0))
        stop2.set()
        loop.run_until_complete(task2)
        loop.close()
    after = [(t, s, b) for t, s, b in seen2 if t >= t_region]
    last_a = max((t for t, s, b in after if b.startswith("us-east1/")), default=t_region)
    first_b_streak = next(
        (t for t, s, b in after if b.startswith("us-west1/") and t > last_a), t_region
    )
    q = (
        statistics.quantiles(cutoffs, n=100, method="inclusive")
        if len(cutoffs) > 1
        else cutoffs * 99
    )
    figures = {
        "failover.kills": kills,
        "failover.last_sent_after_kill_p50_ms": round(statistics.median(cutoffs) * 1000, 2),
        "failover.last_sent_after_kill_p99_ms": round(q[98] * 1000, 2),
        "failover.last_sent_after_kill_max_ms": round(max(cutoffs) * 1000, 2),
        "failover.client_errors_per_kill_max": max(errors),
        "failover.client_errors_total": sum(errors),
        "region.kill_to_next_region_ms": round((first_b_streak - t_region) * 1000, 2),
        "region.client_errors": sum(1 for _, s, _ in after if s >= 500 or s == 0),
    }
    return figures, {}, {}


async def _hold(port: int, n: int, conns: list[Any]) -> int:
    """Open ``n`` keep-alive connections, one request each; returns how many answered."""
    ok = 0
    req = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    sem = asyncio.Semaphore(500)

    async def one() -> None:
        nonlocal ok
        async with sem:
            r, w = await asyncio.open_connection("127.0.0.1", port)
            w.write(req)
            head = await r.readuntil(b"\r\n\r\n")
            length = int(re.search(rb"Content-Length: (\d+)", head).group(1))  # type: ignore[union-attr]
            await r.readexactly(length)
            conns.append((r, w))
            ok += 1

    await asyncio.gather(*(one() for _ in range(n)), return_exceptions=True)
    return ok


def connections(quick: bool) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    n = 2000 if quick else 10_000
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if min(hard, resource.getrlimit(resource.RLIMIT_NOFILE)[0]) < n + 500:
        return {"connections.skipped": f"RLIMIT_NOFILE {hard} < {n + 500}"}, {}, {}
    with procs() as ps:
        be = _ports(1)
        static_backend(ps, "backend", be)
        gp, ga = _ports(2)
        pid = gateway(ps, "gateway", gp, ga, {"local": be})
        time.sleep(0.5)
        rss0 = _rss_kib(pid)
        conns: list[Any] = []
        loop = asyncio.new_event_loop()
        t = time.monotonic()
        ok = loop.run_until_complete(_hold(gp, n, conns))
        opened_s = time.monotonic() - t
        time.sleep(0.5)
        rss1 = _rss_kib(pid)
        doc = _get(f"http://127.0.0.1:{ga}/v1/backends")
        held = int(re.search(rb'"client_connections": (\d+)', doc).group(1))  # type: ignore[union-attr]
        for _, w in conns:
            w.close()
        loop.run_until_complete(asyncio.sleep(0.5))
        loop.close()
    per_conn = (rss1 - rss0) * 1024 / max(1, ok)
    return (
        {
            "connections.opened": ok,
            "connections.held_by_gateway": held,
            "connections.open_s": round(opened_s, 2),
            "connections.rss_before_mib": round(rss0 / 1024, 1),
            "connections.rss_after_mib": round(rss1 / 1024, 1),
            "connections.bytes_per_connection": round(per_conn),
            "connections.rss_at_100k_mib_extrapolated": round(
                (rss0 * 1024 + per_conn * 100_000) / 2**20
            ),
        },
        {},
        {},
    )


def process_figures(quick: bool) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    missing = [tool for tool in ("wrk", "haproxy") if shutil.which(tool) is None]
    if missing:
        raise RuntimeError(f"{' and '.join(missing)} not installed: apt-get install -y wrk haproxy")
    figures: dict[str, Any] = {}
    peers: dict[str, Any] = {}
    ratios: dict[str, Any] = {}
    for part in (throughput, failover, connections):
        f, p, r = part(quick)
        figures.update(f)
        peers.update(p)
        ratios.update(r)
    return figures, peers, ratios
