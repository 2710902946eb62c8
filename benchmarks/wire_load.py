"""A lean load generator for the wire API, shaped like etcd's ``benchmark put``: ``clients``
closed-loop clients (each sends one put and waits for its answer) spread over ``conns``
connections to the leader, 16-byte sequential keys, ``value_size``-byte values. Each client
is a session (client id + seq), as the Python client's writes are. It runs in its own
process (``python -m benchmarks.wire_load ADDR ...`` prints JSON), so its CPU is not the
benchmark's; ``wire_load()`` starts it against a cluster's leader.

It follows the leader as ``WireClient`` does: an ``unavailable`` answer naming the leader's
wire address (not applied) moves that connection there and re-sends the write (same session
and seq), at most ``MAX_REDIRECTS`` times per write; the latency counts from the first send.
Any other problem is an error, counted by type; after ``unavailable`` (no leader yet) or
``busy`` the client waits ``BACKOFF_S`` before its next write rather than spin on answers.
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

MAX_REDIRECTS = 3
BACKOFF_S = 0.02


class _Conn(asyncio.Protocol):
    def __init__(self, addr: str) -> None:
        self.addr = addr
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


async def _connect(addr: str) -> _Conn:
    host, _, port = addr.rpartition(":")
    loop = asyncio.get_running_loop()
    _, proto = await loop.create_connection(lambda: _Conn(addr), host, int(port))
    return proto


async def _run(
    addr: str, clients: int, conns: int, seconds: float, value_size: int
) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    links = [await _connect(addr) for _ in range(max(1, min(conns, clients)))]
    retired: list[_Conn] = []  # moved away from (closed at the end: answers may be due)
    moving: dict[int, asyncio.Task[_Conn]] = {}
    value = os.urandom(value_size)
    latencies: list[float] = []
    errors = redirects = moves = 0
    # what went wrong, by problem type (and "lost" for a dropped connection): a row with
    # errors must say which, not only how many
    kinds: dict[str, int] = {}
    stop = time.monotonic() + seconds
    rid = 0

    async def follow(i: int, target: str) -> None:
        """Move connection ``i`` to ``target`` (once, for all the clients sharing it)."""
        nonlocal moves
        if links[i].addr == target:
            return
        task = moving.get(i)
        if task is None:
            task = moving[i] = asyncio.ensure_future(_connect(target))
            try:
                new = await task
            finally:
                moving.pop(i, None)
            retired.append(links[i])
            links[i] = new
            moves += 1
        else:
            await task

    async def client(w: int) -> None:
        nonlocal rid, errors, redirects
        i = w % len(links)
        seq = 0
        cid = f"bench-{os.getpid()}-{w}"
        while time.monotonic() < stop:
            seq += 1
            key = f"{w:06d}{seq:010d}"  # 16 bytes, sequential per client
            t0 = time.perf_counter()
            for attempt in range(MAX_REDIRECTS + 1):
                rid += 1
                link = links[i]
                fut: asyncio.Future[Any] = loop.create_future()
                link.pending[rid] = fut
                assert link.transport is not None
                link.transport.write(
                    Request(rid, "put", key, value, None, cid, seq, 10_000).frame()
                )
                try:
                    reply = await fut
                except ConnectionError:
                    errors += 1
                    kinds["lost"] = kinds.get("lost", 0) + 1
                    return
                if reply.problem is None:
                    latencies.append(time.perf_counter() - t0)
                    break
                kind = str(reply.problem.get("type", "?")).rsplit("/", 1)[-1].rsplit(":", 1)[-1]
                target = reply.problem.get("leader_wire")
                if kind == "unavailable" and isinstance(target, str) and attempt < MAX_REDIRECTS:
                    redirects += 1  # not applied: the same write, at the leader
                    try:
                        await follow(i, target)
                    except OSError:
                        await asyncio.sleep(BACKOFF_S)
                    continue
                errors += 1
                kinds[kind] = kinds.get(kind, 0) + 1
                if kind in ("unavailable", "busy"):
                    await asyncio.sleep(BACKOFF_S)
                break

    t0 = time.perf_counter()
    await asyncio.gather(*(client(w) for w in range(clients)))
    elapsed = time.perf_counter() - t0
    for link in links + retired:
        if link.transport is not None:
            link.transport.close()
    figures = load_figures(latencies, elapsed, errors)
    return {**figures, "error_kinds": kinds, "redirects": redirects, "leader_moves": moves}


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
