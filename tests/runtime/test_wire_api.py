"""The wire API on three real node processes (fsync on): pipelined writes through a
follower (redirected to the leader), exactly-once on reconnect, deadlines that say honestly
what became of a write, a leader change, and bad frames that get a problem and leave the
connection (and the server) working."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import aiohttp
import msgpack
import pytest

from novacron_core.client import ClientError, NodeUnreachable, OutcomeUnknown
from novacron_core.sim import History, KVModel, check_linearizable
from novacron_core.wire.client import WireClient
from novacron_core.wire.frames import FrameReader, Request, parse_reply
from tests.runtime.procs import ProcCluster

pytestmark = pytest.mark.slow


def wire(c: ProcCluster, name: str) -> str:
    return f"127.0.0.1:{c.http_ports[name] + 1}"


@pytest.fixture(scope="module")
def procs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProcCluster]:
    """One group for the module (starting one takes seconds); the leader-kill test is last."""
    c = ProcCluster(tmp_path_factory.mktemp("wire"), extra=["--fsync"])
    c.start_all()
    try:
        yield c
    finally:
        c.stop_all()


@pytest.fixture
async def cluster(procs: ProcCluster) -> tuple[ProcCluster, str]:
    async with aiohttp.ClientSession() as http:
        await procs.all_ready(http)
        return procs, await procs.leader(http)


class Raw:
    """A bare connection speaking frames, to send what the client never would."""

    def __init__(self, addr: str) -> None:
        host, port = addr.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=10)
        self.frames = FrameReader()
        self.got: list[Any] = []

    def send(self, body: bytes) -> None:
        self.sock.sendall(struct.pack(">I", len(body)) + body)

    def reply(self) -> Any:
        while not self.got:
            data = self.sock.recv(1 << 16)
            if not data:
                raise ConnectionError("closed")
            self.got += [parse_reply(b) for b in self.frames.feed(data)]
        return self.got.pop(0)

    def close(self) -> None:
        self.sock.close()


async def test_pipelined_writes_through_a_follower_match_a_model(
    cluster: tuple[ProcCluster, str],
) -> None:
    c, leader = cluster
    follower = next(n for n in c.names if n != leader)
    model: dict[str, bytes] = {}
    async with WireClient([wire(c, follower)]) as w:
        # 400 puts in flight at once on one connection (one session slot each)
        values = {f"k{i}": os.urandom(64) for i in range(400)}
        await asyncio.gather(*(w.put(k, v) for k, v in values.items()))
        model.update(values)
        assert w._conn is not None
        assert w._conn.addr == wire(c, leader)
        swapped = await asyncio.gather(
            w.cas("k1", values["k1"], b"new"), w.cas("k2", b"not it", b"x")
        )
        assert swapped == [(True, None), (False, values["k2"])]
        model["k1"] = b"new"
        assert await w.delete("k3") is True
        del model["k3"]
        assert await w.delete("k3") is False
        got = await asyncio.gather(*(w.get(k) for k in sorted(values)))
        assert dict(zip(sorted(values), got, strict=True)) == {
            k: model.get(k) for k in sorted(values)
        }
    # the HTTP API sees the same store
    async with aiohttp.ClientSession() as http, http.get(c.url(leader) + "/v1/kv/k1") as r:
        assert await r.read() == b"new"


async def test_more_writes_than_session_slots_wait_for_a_slot(
    cluster: tuple[ProcCluster, str],
) -> None:
    c, leader = cluster
    async with WireClient([wire(c, leader)], slots=3) as w:
        await asyncio.gather(*(w.put(f"slot{i}", str(i).encode()) for i in range(30)))
        got = await asyncio.gather(*(w.get(f"slot{i}") for i in range(30)))
    assert got == [str(i).encode() for i in range(30)]


async def test_a_resent_session_write_applies_once(cluster: tuple[ProcCluster, str]) -> None:
    c, leader = cluster
    first = Raw(wire(c, leader))
    first.send(msgpack.packb([1, "put", "acct", b"0"]))
    assert first.reply().problem is None
    cas = Request(2, "cas", "acct", b"1", b"0", "client-a", 7)
    first.sock.sendall(cas.frame())
    assert first.reply().ok is True
    first.close()
    # the connection broke; the client cannot know it was applied: send it again
    second = Raw(wire(c, leader))
    second.sock.sendall(Request(1, "cas", "acct", b"1", b"0", "client-a", 7).frame())
    again = second.reply()
    assert (again.problem, again.ok) == (None, True)  # the first result, not a failed swap
    # the same cas without a session is executed again and fails: the value is b"1"
    second.sock.sendall(Request(2, "cas", "acct", b"1", b"0").frame())
    fresh = second.reply()
    assert (fresh.ok, fresh.value) == (False, b"1")
    # an older seq of the session is refused, not applied
    second.sock.sendall(Request(3, "put", "acct", b"9", None, "client-a", 6).frame())
    stale = second.reply()
    assert stale.problem["outcome"] == "not_applied"
    assert "older" in stale.problem["detail"]
    second.close()


async def test_client_resends_on_a_broken_connection_with_the_same_session(
    cluster: tuple[ProcCluster, str],
) -> None:
    c, leader = cluster
    async with WireClient([wire(c, leader)]) as w:
        await w.put("ctr", b"0")
        task = asyncio.ensure_future(w.cas("ctr", b"0", b"1"))
        await asyncio.sleep(0)  # the frame is written; cut the connection under it
        assert w._conn is not None
        w._conn.writer.transport.abort()
        assert await task == (True, None)  # answered once, whether the first send landed
        assert await w.get("ctr") == b"1"


async def test_deadline_passes_with_an_honest_outcome(cluster: tuple[ProcCluster, str]) -> None:
    c, leader = cluster
    followers = [n for n in c.names if n != leader]
    async with WireClient([wire(c, leader)], timeout=5) as w:
        await w.put("d", b"before")
        for f in followers:
            c.procs[f].send_signal(signal.SIGSTOP)
        try:
            with pytest.raises((ClientError, OutcomeUnknown)) as err:
                await w.put("d", b"during", deadline=0.5)
            # proposed, never committed (no quorum): it may still commit later. Either the
            # node's own answer (504 outcome-unknown) or the client's, when a later attempt
            # was refused after the first one's outcome became unknown; never "not applied"
            if isinstance(err.value, ClientError):
                assert err.value.status == 504
                assert err.value.applied is None
                assert err.value.body["type"] == "urn:novacron:problem:outcome-unknown"
        finally:
            for f in followers:
                c.procs[f].send_signal(signal.SIGCONT)
        value = await w.get("d", deadline=10)
        assert value in (b"before", b"during")  # either, as "unknown" promised


async def test_bad_frames_get_a_problem_and_the_connection_keeps_working(
    cluster: tuple[ProcCluster, str],
) -> None:
    c, leader = cluster
    raw = Raw(wire(c, leader))
    raw.send(b"\xc1 not msgpack")
    p = raw.reply()
    assert p.rid == 0
    assert p.problem["type"].endswith("invalid-body")
    assert "msgpack" in p.problem["detail"]
    assert p.problem["outcome"] == "not_applied"
    raw.send(msgpack.packb([5, "explode", "k"]))
    p = raw.reply()
    assert p.rid == 5
    assert p.problem["field"] == "op"
    assert p.problem["status"] == 422
    raw.send(msgpack.packb([6, "put", "k", 12]))
    assert raw.reply().problem["field"] == "value"
    raw.send(msgpack.packb([7, "put", "vm/x", b"raw"]))
    assert raw.reply().problem["type"].endswith("reserved-key")
    raw.send(msgpack.packb([8, "put", "ok", b"fine"]))
    ok = raw.reply()
    assert ok.rid == 8
    assert ok.problem is None
    # a length no frame may have: a problem, then this connection (only) is closed
    raw.sock.sendall(struct.pack(">I", 0xFFFFFFF0))
    p = raw.reply()
    assert p.problem["type"].endswith("too-large")
    with pytest.raises(ConnectionError):
        raw.reply()
    raw.close()
    async with WireClient([wire(c, leader)]) as w:
        assert await w.get("ok") == b"fine"


def novacron(*args: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-c", "from novacron_core.cli import main; main()", *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60)


async def test_cli_kv_uses_the_wire_api_and_can_use_http(cluster: tuple[ProcCluster, str]) -> None:
    c, _ = cluster
    urls = [a for n in c.names for a in ("--url", c.url(n))]
    put = await asyncio.to_thread(novacron, "kv", "put", "cli-key", "v1", *urls)
    assert put.returncode == 0, put.stderr
    assert "using HTTP" not in put.stderr  # the wire API answered
    got = await asyncio.to_thread(novacron, "kv", "get", "cli-key", "--transport", "http", *urls)
    assert got.stdout.strip() == "v1"
    bad = await asyncio.to_thread(
        novacron, "kv", "cas", "cli-key", "--expected", "nope", "--value", "v2", *urls
    )
    assert bad.returncode == 1
    assert "not swapped: cli-key holds v1 (not applied)" in bad.stderr
    # no wire port there (the HTTP port + 1 of a closed port): HTTP is tried, and says so
    dead = await asyncio.to_thread(novacron, "kv", "get", "cli-key", "--url", "http://127.0.0.1:9")
    assert "using HTTP" in dead.stderr
    assert "nothing was applied" in dead.stderr


async def test_pipelined_history_with_leader_kills_is_linearizable(
    cluster: tuple[ProcCluster, str],
) -> None:
    """Eight clients share one pipelined connection (a session slot each) while the leader is
    killed twice and restarted; every answer is recorded (ok, fail = certainly not applied,
    info = unknown) and the history is checked against the KV model."""
    c, _ = cluster
    h = History()
    stop = asyncio.Event()
    async with (
        WireClient([wire(c, n) for n in c.names], timeout=4) as w,
        aiohttp.ClientSession() as http,
    ):

        async def run(cid: int) -> None:
            rng = random.Random(cid)
            n = 0
            while not stop.is_set():
                n += 1
                key = f"lin{rng.randrange(3)}"
                kind = rng.choice(["put", "put", "get", "cas"])
                value: Any = None
                if kind == "put":
                    value = f"c{cid}-{n}"
                elif kind == "cas":
                    value = (f"c{cid}-{n - 1}", f"c{cid}-{n}")
                op = h.invoke(cid, kind, key, value, time.monotonic())
                try:
                    if kind == "put":
                        await w.put(key, value.encode())
                        result: Any = None
                    elif kind == "get":
                        got = await w.get(key)
                        result = None if got is None else got.decode()
                    else:
                        result, _ = await w.cas(key, value[0].encode(), value[1].encode())
                except ClientError as e:
                    if e.applied is False:
                        h.fail(op, time.monotonic())
                    else:
                        h.info(op, time.monotonic())
                    continue
                except (OutcomeUnknown, NodeUnreachable):
                    h.info(op, time.monotonic())
                    continue
                h.ok(op, result, time.monotonic())

        tasks = [asyncio.create_task(run(i)) for i in range(8)]
        for _ in range(2):
            await asyncio.sleep(0.7)
            lead = await c.leader(http)
            c.kill9(lead)
            await c.leader(http)
            c.start(lead)
        await asyncio.sleep(0.7)
        stop.set()
        await asyncio.gather(*tasks)
        await c.all_ready(http)
    h.close()
    assert h.counts().get("ok", 0) > 50, h.counts()
    res = check_linearizable(h, KVModel())
    assert res.ok, f"{res.key}: {res.explanation} (logs in {c.root})"


async def test_writes_continue_after_the_leader_is_killed(
    cluster: tuple[ProcCluster, str],
) -> None:
    c, leader = cluster
    async with WireClient([wire(c, n) for n in c.names], timeout=15) as w:
        await w.put("before", b"1")
        c.kill9(leader)
        # the connection breaks; the client reconnects to a survivor, is redirected to the
        # new leader, and re-sends with the same session
        await asyncio.gather(*(w.put(f"after{i}", b"2") for i in range(50)))
        assert w._conn is not None
        assert w._conn.addr != wire(c, leader)
        assert await w.get("before") == b"1"
        assert await w.get("after49") == b"2"
