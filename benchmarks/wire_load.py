"""A lean load generator for the wire API, shaped like etcd's ``benchmark put``: ``clients``
closed-loop clients (each sends one put and waits for its answer) spread over ``conns``
connections to the leader, 16-byte sequential keys, ``value_size``-byte values. Each client
is a session (client id + seq), as the Python client's writes are. It runs in its own
process (``python -m benchmarks.wire_load ADDR ...`` prints JSON), so its CPU is not the
benchmark's; ``wire_load()`` starts it against a cluster's leader.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from typing import Any

from benchmarks.common import load_figures
from novacron_core.wire.frames import FrameReader, Request, parse_reply


class _Conn(asyncio.Protocol):
    def __init__(self) -> None:
        self.frames = FrameReader()
        self.pending: dict[int, asyncio.Future[Any]] = {}
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        for body in self.frames.feed(data):
            reply = parse_reply(body)
            fut = self.pending.pop(reply.rid, None)
            if fut is not None and not fut.done():
                fut.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        for fut in self.pending.values():
            if not fut.done():
                fut.set_exception(ConnectionError("lost"))


async def _run(
    addr: str, clients: int, conns: int, seconds: float, value_size: int
) -> dict[str, Any]:
    host, _, port = addr.rpartition(":")
    loop = asyncio.get_running_loop()
    links = []
    for _ in range(max(1, min(conns, clients))):
        _, proto = await loop.create_connection(_Conn, host, int(port))
        links.append(proto)
    value = os.urandom(value_size)
    latencies: list[float] = []
    errors = 0
    # what went wrong, by problem type (and "lost" for a dropped connection): a row with
    # errors must say which, not only how many
    kinds: dict[str, int] = {}
    stop = time.monotonic() + seconds
    rid = 0

    async def client(w: int) -> None:
        nonlocal rid, errors
        link = links[w % len(links)]
        seq = 0
        cid = f"bench-{os.getpid()}-{w}"
        while time.monotonic() < stop:
            rid += 1
            seq += 1
            key = f"{w:06d}{seq:010d}"  # 16 bytes, sequential per client
            fut: asyncio.Future[Any] = loop.create_future()
            link.pending[rid] = fut
            assert link.transport is not None
            t0 = time.perf_counter()
            link.transport.write(Request(rid, "put", key, value, None, cid, seq, 10_000).frame())
            try:
                reply = await fut
            except ConnectionError:
                errors += 1
                kinds["lost"] = kinds.get("lost", 0) + 1
                return
            if reply.problem is None:
                latencies.append(time.perf_counter() - t0)
            else:
                errors += 1
                kind = str(reply.problem.get("type", "?")).rsplit("/", 1)[-1]
                kinds[kind] = kinds.get(kind, 0) + 1

    t0 = time.perf_counter()
    await asyncio.gather(*(client(w) for w in range(clients)))
    elapsed = time.perf_counter() - t0
    for link in links:
        if link.transport is not None:
            link.transport.close()
    return {**load_figures(latencies, elapsed, errors), "error_kinds": kinds}


def wire_load(c: Any, clients: int, conns: int, seconds: float, value_size: int) -> dict[str, Any]:
    """Run the generator in its own process against cluster ``c``'s leader's wire API."""
    host, port = c.http[c.leader()].removeprefix("http://").rsplit(":", 1)
    addr = f"{host}:{int(port) + 1}"
    argv = [sys.executable, "-m", "benchmarks.wire_load", addr, "--clients", str(clients)]
    argv += ["--conns", str(conns), "--seconds", str(seconds), "--value-size", str(value_size)]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 120)
    if proc.returncode != 0:
        return {"error": proc.stderr[-400:]}
    out: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.wire_load", description=__doc__)
    p.add_argument("addr")
    p.add_argument("--clients", type=int, default=64)
    p.add_argument("--conns", type=int, default=64)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--value-size", type=int, default=256)
    a = p.parse_args(argv)
    coro = _run(a.addr, a.clients, a.conns, a.seconds, a.value_size)
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        res = asyncio.run(coro)
    else:
        res = uvloop.run(coro)
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
