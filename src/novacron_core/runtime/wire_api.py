"""The node's wire API: KV requests in length-prefixed msgpack frames over long-lived TCP
connections (plain TCP, as the HTTP API), pipelined (``wire/frames.py`` defines the frames).

Why beside HTTP: over HTTP/JSON every write costs a request parse, a handler task, a JSON
answer, and on a follower a proxy hop to the leader (docs/write-path.md has the profile).
Here a connection's frames are parsed where they arrive (no task per request), handed to
the driver by callback (``Driver.submit``), so every request that arrived while the last
batch was being fsynced is proposed in the next batch (one fsync, one append per follower),
and the replies a batch produces leave in one write per connection. A follower does not
proxy: it answers ``unavailable`` naming the leader and its wire address.

The error contract is the HTTP API's (``runtime/problems.py``): the same problem types and
``outcome`` (``not_applied`` / ``unknown``). Deadlines: a request still queued when its
deadline passes is withdrawn unproposed (``unavailable``, not applied); one already proposed
gets ``outcome-unknown``; a read not answered in time, ``unavailable``.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable
from typing import Any, Protocol, cast

from novacron_core.codec import CodecError, encode
from novacron_core.consensus.interface import BUSY, NOT_LEADER, OK, UNKNOWN, Propose, Read, Reply
from novacron_core.consensus.kv import (
    CAS,
    DELETE,
    PUT,
    KVCommand,
    KVQuery,
    KVResult,
    decode_result,
)
from novacron_core.runtime.problems import Problem
from novacron_core.wire.frames import (
    MAX_FRAME,
    BadRequest,
    FrameReader,
    FrameTooLarge,
    Request,
    ok_frame,
    parse_request,
    problem_frame,
)

log = logging.getLogger(__name__)

VM_PREFIX = "vm/"  # the VM API's key space (as runtime/http_api.py): raw writes refused
# Requests one connection may have in flight; beyond it: busy (not applied). Reading pauses
# while the socket's send buffer is full, so a client that does not read its answers stops
# being read from instead of growing the node's memory.
MAX_PER_CONNECTION = 4096
_OPS = {"put": PUT, "delete": DELETE, "cas": CAS}


class WireDriver(Protocol):
    @property
    def pending(self) -> int: ...

    def submit(self, req: Any, on_reply: Callable[[Any], None]) -> int: ...

    def withdraw(self, rid: int) -> bool: ...


class WireNode(Protocol):
    """What the wire API needs from the node (``runtime/node.py``)."""

    @property
    def id(self) -> str: ...

    @property
    def leader(self) -> str | None: ...

    def wire_driver(self) -> WireDriver | None: ...

    def leader_wire(self) -> str | None: ...

    def leaderless(self) -> bool: ...

    def request_timeout_s(self) -> float: ...

    def max_inflight(self) -> int: ...


class WireServer:
    def __init__(self, node: WireNode, server_ssl: ssl.SSLContext | None = None) -> None:
        self.node = node
        self.server_ssl = server_ssl
        self._server: asyncio.Server | None = None
        self.connections: set[_Connection] = set()

    async def start(self, host: str, port: int) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _Connection(self), host, port, ssl=self.server_ssl, reuse_address=True
        )

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for c in list(self.connections):
            c.abort()
        if self._server is not None:
            await self._server.wait_closed()

    # ---------------------------------------------------------------- one request

    def problem(self, kind: str, detail: str, **extra: Any) -> dict[str, Any]:
        return Problem(kind, detail, **extra).body()

    def group_request(self, req: Request) -> Any:
        """What to hand the group for ``req``; None for a write into the VM key space."""
        if req.op == "get":
            return Read(encode(KVQuery(req.key)))
        if req.key.startswith(VM_PREFIX):
            return None
        cmd = KVCommand(_OPS[req.op], req.key, req.value, req.expected, req.client, req.seq)
        return Propose(encode(cmd))

    def answer(self, req: Request, reply: Any) -> bytes:
        """The frame answering ``req`` with the group's ``reply`` (as http_api's _call)."""
        if not isinstance(reply, Reply):
            return problem_frame(req.rid, self.problem("internal", f"unexpected {reply!r:.80}"))
        if reply.status == OK:
            try:
                res = decode_result(reply.value) if reply.value else KVResult(req.op != "get")
            except CodecError:
                return problem_frame(req.rid, self.problem("corrupt-record", "bad result"))
            if res.stale:
                return problem_frame(
                    req.rid,
                    self.problem(
                        "conflict",
                        f"seq {req.seq} of client {req.client!r} is older than the last one "
                        "applied for it: not applied (use one client id per request in flight)",
                    ),
                )
            if req.op == "get" and not res.ok:
                return problem_frame(req.rid, self.problem("not-found", "no such key"))
            return ok_frame(req.rid, res.ok, res.value)
        write = req.op != "get"
        if reply.status == NOT_LEADER or (reply.status == UNKNOWN and not write):
            lead, wire = self.node.leader, self.node.leader_wire()
            if reply.status == NOT_LEADER and lead is None:
                detail = "no leader known (an election may be running): not applied"
                return problem_frame(req.rid, self.problem("unavailable", detail))
            if reply.status == NOT_LEADER and wire is not None and not self.node.leaderless():
                return problem_frame(
                    req.rid,
                    self.problem(
                        "unavailable",
                        f"{self.node.id} is not the leader; ask {lead} at {wire}: not applied",
                        leader=lead,
                        leader_wire=wire,
                    ),
                )
            detail = reply.detail or "this replica cannot answer now"
            return problem_frame(req.rid, self.problem("unavailable", f"{detail}: not applied"))
        if reply.status == BUSY:
            return problem_frame(
                req.rid, self.problem("busy", f"{reply.detail or 'busy'}: not applied")
            )
        if reply.status == UNKNOWN:
            return problem_frame(req.rid, self.unknown(reply.detail or "the leader lost its term"))
        return problem_frame(req.rid, self.problem("conflict", reply.detail or reply.status))

    def unknown(self, why: str) -> dict[str, Any]:
        return self.problem(
            "outcome-unknown",
            f"{why}: the write may or may not have been applied; retry with the same "
            "client/seq, or read",
        )


class _Connection(asyncio.Protocol):
    """One client connection. Everything runs in protocol callbacks: no task per request."""

    def __init__(self, server: WireServer) -> None:
        self.server = server
        self.reader = FrameReader(MAX_FRAME)
        self.transport: asyncio.Transport | None = None
        self.out: list[bytes] = []
        self.flush_scheduled = False
        self.inflight: dict[int, tuple[int, asyncio.TimerHandle]] = {}  # rid -> driver id
        self.closed = False
        self.loop = asyncio.get_running_loop()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # (uvloop's transports are not asyncio.Transport subclasses, but behave as one)
        self.transport = cast(asyncio.Transport, transport)
        self.transport.set_write_buffer_limits(high=4 << 20)
        self.server.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.server.connections.discard(self)
        driver = self.server.node.wire_driver()
        for drid, timer in self.inflight.values():
            timer.cancel()
            if driver is not None:
                driver.withdraw(drid)  # queued ones are dropped: nobody would hear of them
        self.inflight.clear()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def pause_writing(self) -> None:
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        try:
            bodies = self.reader.feed(data)
        except FrameTooLarge as e:
            self.send(problem_frame(0, self.server.problem("too-large", f"{e}: closing")))
            self._flush()
            assert self.transport is not None
            self.transport.close()
            return
        for body in bodies:
            try:
                self.handle(parse_request(body))
            except BadRequest as e:
                extra = {"field": e.field} if e.field else {}
                kind = "invalid-field" if e.field else "invalid-body"
                self.send(problem_frame(e.rid, self.server.problem(kind, e.detail, **extra)))

    def handle(self, req: Request) -> None:
        server = self.server
        if req.rid in self.inflight:
            raise BadRequest(req.rid, f"id: {req.rid} is already in flight", "id")
        driver = server.node.wire_driver()
        if driver is None:
            self.send(problem_frame(req.rid, server.problem("unavailable", "starting")))
            return
        if len(self.inflight) >= MAX_PER_CONNECTION or driver.pending >= server.node.max_inflight():
            self.send(
                problem_frame(
                    req.rid, server.problem("busy", "too many requests in flight: not applied")
                )
            )
            return
        group_req = server.group_request(req)
        if group_req is None:
            problem = server.problem(
                "reserved-key",
                f"keys under {VM_PREFIX} belong to the VM API: write VM records through "
                "/v1/vms (a raw value there would not be a VM record): not applied",
                key=req.key,
            )
            self.send(problem_frame(req.rid, problem))
            return
        timeout = req.deadline_ms / 1000 if req.deadline_ms else server.node.request_timeout_s()

        def on_reply(reply: Any) -> None:
            entry = self.inflight.pop(req.rid, None)
            if entry is None:
                return
            entry[1].cancel()
            if not self.closed:
                self.send(server.answer(req, reply))

        drid = driver.submit(group_req, on_reply)
        timer = self.loop.call_later(timeout, self.expire, req)
        self.inflight[req.rid] = (drid, timer)

    def expire(self, req: Request) -> None:
        entry = self.inflight.pop(req.rid, None)
        driver = self.server.node.wire_driver()
        if entry is None or driver is None:
            return
        if driver.withdraw(entry[0]):
            problem = self.server.problem(
                "unavailable", "the deadline passed before the request was proposed: not applied"
            )
        elif req.op == "get":
            problem = self.server.problem("unavailable", "read not answered before the deadline")
        else:
            problem = self.server.unknown("the deadline passed after it was proposed")
        self.send(problem_frame(req.rid, problem))

    def send(self, data: bytes) -> None:
        self.out.append(data)
        if not self.flush_scheduled:
            # one write per connection for every reply a batch (or a read) produces
            self.flush_scheduled = True
            self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        self.flush_scheduled = False
        if self.out and self.transport is not None and not self.closed:
            self.transport.write(b"".join(self.out))
        self.out.clear()
