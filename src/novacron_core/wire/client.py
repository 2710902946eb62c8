"""The Python client for a node's wire API (``wire/frames.py``): one long-lived connection,
any number of requests in flight on it, sessions for exactly-once, deadlines, and the HTTP
client's error contract (``client.py``):

- :class:`~novacron_core.client.NodeUnreachable`: no node accepted a connection, or the
  deadline passed before the request could be sent: nothing was applied;
- :class:`~novacron_core.client.OutcomeUnknown`: a write was sent and no answer came before
  its deadline (every re-send carried the same session, so it applied at most once);
- :class:`~novacron_core.client.ClientError`: the node answered a problem (the HTTP API's
  types); ``applied`` says False (certainly not) or None (may have).

Sessions: the store remembers one (client id, seq) per client id, so each write takes a
*slot* (``<client id>.<n>``) for as long as it is in flight, with the slot's next seq. A
write whose connection broke is sent again on the next connection with the same slot and
seq: applied once, answered with its first result. A follower answers ``unavailable``
naming the leader's wire address, and the client moves there (not applied, so safe).
"""

from __future__ import annotations

import asyncio
import ssl
import time
import uuid
from collections import deque
from collections.abc import Sequence
from typing import Any

from novacron_core.client import ClientError, NodeUnreachable, OutcomeUnknown
from novacron_core.wire.frames import (
    PROBLEM_BASE,
    WRITES,
    FrameReader,
    Reply,
    Request,
    parse_reply,
)

DEFAULT_SLOTS = 1024
MAX_REDIRECTS = 3


class _Lost(Exception):
    """The connection broke with the request on it."""


def split_addr(addr: str) -> tuple[str, int]:
    addr = addr.removeprefix("novacron://")
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"a wire address is host:port, not {addr!r}")
    return host.strip("[]"), int(port)


class _Conn:
    def __init__(
        self, addr: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.addr, self.reader, self.writer = addr, reader, writer
        self.pending: dict[int, asyncio.Future[Reply]] = {}
        self.alive = True
        self.task = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        frames = FrameReader()
        why = "closed by the node"
        try:
            while True:
                data = await self.reader.read(1 << 18)
                if not data:
                    break
                for body in frames.feed(data):
                    reply = parse_reply(body)
                    fut = self.pending.pop(reply.rid, None)
                    if fut is not None and not fut.done():
                        fut.set_result(reply)
                    elif reply.rid == 0 and reply.problem is not None:
                        why = str(reply.problem.get("detail"))
        except (OSError, ValueError) as e:
            why = f"{type(e).__name__}: {e}"
        finally:
            self.alive = False
            for fut in self.pending.values():
                if not fut.done():
                    fut.set_exception(_Lost(why))
            self.pending.clear()
            self.writer.close()

    def close(self) -> None:
        self.alive = False
        self.task.cancel()
        self.writer.close()


class WireClient:
    """Talk to nodes' wire APIs (``host:port``: the HTTP port + 1 by default). Use from one
    event loop; ``async with WireClient([...]) as c: await c.put("k", b"v")``."""

    def __init__(
        self,
        addrs: Sequence[str] | str,
        *,
        timeout: float = 5.0,
        client_id: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
        slots: int = DEFAULT_SLOTS,
        connect_timeout: float = 1.0,
    ) -> None:
        self.addrs = [addrs] if isinstance(addrs, str) else list(addrs)
        if not self.addrs:
            raise ValueError("give at least one node wire address, e.g. 127.0.1.1:8081")
        for a in self.addrs:
            split_addr(a)
        self.timeout = timeout
        self.client_id = client_id or uuid.uuid4().hex[:16]
        self.ssl = ssl_context
        self.connect_timeout = connect_timeout
        self._conn: _Conn | None = None
        self._connecting: asyncio.Lock | None = None
        self._preferred: str | None = None  # the leader a follower named
        self._rid = 0
        self._free: list[int] = list(range(slots - 1, -1, -1))
        self._slot_seq = [0] * slots
        self._slot_waiters: deque[asyncio.Future[int]] = deque()

    async def __aenter__(self) -> WireClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # ---------------------------------------------------------------- operations

    async def put(self, key: str, value: bytes, *, deadline: float | None = None) -> None:
        await self._call("put", key, value, None, deadline)

    async def get(self, key: str, *, deadline: float | None = None) -> bytes | None:
        """The value, or None when the key is absent."""
        try:
            reply = await self._call("get", key, None, None, deadline)
        except ClientError as e:
            if e.status == 404:
                return None
            raise
        return reply.value

    async def delete(self, key: str, *, deadline: float | None = None) -> bool:
        """True when the key existed."""
        reply = await self._call("delete", key, None, None, deadline)
        return reply.value is not None

    async def cas(
        self,
        key: str,
        expected: bytes | None,
        value: bytes | None,
        *,
        deadline: float | None = None,
    ) -> tuple[bool, bytes | None]:
        """(swapped, the value found when not swapped)."""
        reply = await self._call("cas", key, value, expected, deadline)
        return reply.ok, reply.value

    # ---------------------------------------------------------------- machinery

    async def _call(
        self,
        op: str,
        key: str,
        value: bytes | None,
        expected: bytes | None,
        deadline: float | None,
    ) -> Reply:
        budget = self.timeout if deadline is None else deadline
        end = time.monotonic() + budget
        write = op in WRITES
        slot = await self._take_slot() if write else -1
        try:
            client, seq = "", 0
            if write:
                self._slot_seq[slot] += 1
                client, seq = f"{self.client_id}.{slot}", self._slot_seq[slot]
            sent = False
            maybe_applied = False  # an attempt's outcome was unknown: so is the write's
            refused: dict[str, Any] | None = None  # the last "not applied" answer
            redirects = 0
            last = ""
            while True:
                left = end - time.monotonic()
                if left <= 0:
                    break
                try:
                    conn = await self._connected(left)
                except NodeUnreachable:
                    if sent and write:
                        break
                    raise
                self._rid += 1
                req = Request(self._rid, op, key, value, expected, client, seq, int(left * 1000))
                fut: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
                conn.pending[req.rid] = fut
                conn.writer.write(req.frame())
                sent = True
                try:
                    reply = await asyncio.wait_for(fut, left + 0.2)
                except _Lost as e:
                    maybe_applied = True
                    last = f"the connection to {conn.addr} broke ({e})"
                    if self._conn is conn:
                        self._conn = None
                    if write and not client:
                        break
                    continue  # same session: a re-send applies at most once
                except TimeoutError:
                    conn.pending.pop(req.rid, None)
                    maybe_applied = True
                    last = f"no answer from {conn.addr} within the deadline"
                    break
                if reply.problem is None:
                    return reply
                problem = reply.problem
                if problem.get("outcome") == "unknown":
                    maybe_applied = True
                target = problem.get("leader_wire")
                kind = str(problem.get("type", "")).removeprefix(PROBLEM_BASE)
                if kind == "unavailable" and isinstance(target, str) and redirects < MAX_REDIRECTS:
                    redirects += 1
                    self._preferred = target
                    if self._conn is not None and self._conn.addr != target:
                        self._conn.close()
                        self._conn = None
                    continue
                retry = kind in ("unavailable", "busy") or (kind == "outcome-unknown" and client)
                if retry and end - time.monotonic() > 0.05:
                    # not applied (or, with a session, a re-send applies at most once): try
                    # again until the deadline, as an election or a full queue passes
                    last = str(problem.get("detail"))
                    if problem.get("outcome") == "not_applied":
                        refused = problem
                    await asyncio.sleep(0.05)
                    continue
                if write and maybe_applied and problem.get("outcome") == "not_applied":
                    # this attempt was refused, but an earlier one may have been applied
                    last = f"an earlier attempt's outcome was unknown; then {problem.get('detail')}"
                    break
                raise ClientError(
                    int(problem.get("status", 500)), problem, f"novacron://{conn.addr}"
                )
            if not write:
                raise NodeUnreachable(f"{op} {key!r}: not answered within {budget:.3g}s ({last})")
            if refused is not None and not maybe_applied:
                # every attempt was refused (an election, a full queue): not applied
                raise ClientError(int(refused.get("status", 503)), refused, "novacron://")
            if not sent:
                raise NodeUnreachable(f"{op} {key!r}: not sent within {budget:.3g}s: not applied")
            raise OutcomeUnknown(
                f"{op} {key!r}: {last or 'no answer'}: no answer within the {budget:.3g}s "
                "deadline, so it may or may not have been applied (each re-send carried the "
                f"same session {client or '(none)'}/{seq}: at most once); read it back"
            )
        finally:
            if slot >= 0:
                self._give_slot(slot)

    async def _take_slot(self) -> int:
        if self._free:
            return self._free.pop()
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._slot_waiters.append(fut)
        try:
            return await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self._give_slot(fut.result())  # handed over as we were cancelled: pass it on
            raise

    def _give_slot(self, slot: int) -> None:
        while self._slot_waiters:  # straight to the longest waiter, if any
            fut = self._slot_waiters.popleft()
            if not fut.done():
                fut.set_result(slot)
                return
        self._free.append(slot)

    async def _connected(self, left: float) -> _Conn:
        conn = self._conn
        if conn is not None and conn.alive:
            return conn
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            conn = self._conn
            if conn is not None and conn.alive:
                return conn
            errors = []
            order = ([self._preferred] if self._preferred else []) + [
                a for a in self.addrs if a != self._preferred
            ]
            for addr in order:
                host, port = split_addr(addr)
                try:
                    reader, writer = await asyncio.wait_for(
                        asyncio.open_connection(host, port, ssl=self.ssl, limit=1 << 20),
                        min(self.connect_timeout, max(left, 0.01)),
                    )
                except (OSError, TimeoutError) as e:
                    errors.append(f"{addr}: {type(e).__name__}: {e}".rstrip(": "))
                    continue
                self._conn = _Conn(addr, reader, writer)
                return self._conn
            raise NodeUnreachable(
                "no node's wire API accepted a connection (" + "; ".join(errors) + "): "
                "nothing was sent. Is the node running, with its wire API on (the HTTP port "
                "+ --wire-port-offset)?"
            )


def run_sync(addrs: Sequence[str] | str, op: str, *args: Any, timeout: float = 5.0) -> Any:
    """One operation from synchronous code (the CLI): ``run_sync(addrs, "put", k, v)``."""

    async def go() -> Any:
        async with WireClient(addrs, timeout=timeout) as c:
            return await getattr(c, op)(*args)

    return asyncio.run(go())
