"""The backend side: keep-alive HTTP/1.1 connections to the nodes, pooled per backend.

A connection carries one exchange at a time. The response head is awaited as a future;
the body is pushed to a ``sink`` as it arrives (the proxy writes it straight to the
client, pausing this connection's reading while the client's socket is full). What
happened to an exchange that broke is reported precisely, because it decides whether a
retry is safe: refused or failed to connect (nothing sent), lost before any response byte
(the request may have been processed), or lost mid-response.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Callable
from typing import Any, Protocol, cast

import httptools

from novacron_core.balancing import Backend


class ConnectFailed(Exception):
    """Nothing was sent: the connection never opened. ``refused``: nothing listens."""

    def __init__(self, refused: bool, detail: str) -> None:
        super().__init__(detail)
        self.refused = refused


class ExchangeLost(Exception):
    """The connection broke after the request was (at least partly) sent."""

    def __init__(self, detail: str, got_head: bool) -> None:
        super().__init__(detail)
        self.got_head = got_head


class Listener(Protocol):
    """Callbacks instead of futures (the gateway's fast path: no task, no await)."""

    def on_head(self) -> None: ...

    def on_done(self) -> None: ...

    def on_fail(self, err: Exception) -> None: ...


class UpstreamConn(asyncio.Protocol):
    __slots__ = (
        "_done",
        "_head",
        "backend_id",
        "body_started",
        "deadline",
        "early",
        "exchanging",
        "finished",
        "head_only",
        "headers",
        "idle_since",
        "interim",
        "keep_alive",
        "length",
        "listener",
        "loop",
        "parser",
        "pool",
        "reason",
        "reusable",
        "sink",
        "status",
        "transport",
    )

    def __init__(self, pool: UpstreamPool, backend_id: str) -> None:
        self.pool = pool
        self.backend_id = backend_id
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self._head: asyncio.Future[None] | None = None
        self._done: asyncio.Future[None] | None = None
        self.deadline = 0.0
        self.listener: Listener | None = None
        self.sink: Callable[[bytes], None] | None = None
        self.early: list[bytes] = []  # body bytes that came with the head, before a sink
        self.status = 0
        self.length: int | None = None  # the answer's Content-Length, if it had one
        self.reason = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.keep_alive = True
        self.interim = False
        self.exchanging = False
        self.finished = False
        self.head_only = False
        self.body_started = False
        self.reusable = True
        self.idle_since = 0.0

    # ------------------------------------------------------------ exchange

    def begin(self, head_only: bool, deadline: float, listener: Listener | None = None) -> None:
        """Start an exchange that must be answered, body and all, by ``deadline``. No
        timer per exchange (a libuv timer costs more than the rest of a short request):
        the pool's sweep expires exchanges past their deadline, to within a second. With
        a ``listener`` its callbacks report progress; without, the ``head()``/``done()``
        futures do."""
        self.deadline = deadline
        self.listener = listener
        if listener is None:
            self._head = self.loop.create_future()
            self._done = self.loop.create_future()
        else:
            self._head = self._done = None
        self.exchanging = True
        self.finished = False
        self.status, self.reason, self.headers, self.length = 0, b"", [], None
        self.sink = None
        self.early = []
        self.head_only = head_only
        self.body_started = False
        self.keep_alive = True

    @property
    def complete(self) -> bool:
        """The whole answer has arrived (its body is held in ``early``)."""
        return self.finished

    def take_early(self) -> list[bytes]:
        early, self.early = self.early, []
        return early

    def set_sink(self, sink: Callable[[bytes], None]) -> None:
        """Where the body goes; what arrived with the head is handed over first."""
        self.sink = sink
        early, self.early = self.early, []
        for chunk in early:
            sink(chunk)

    def send(self, data: bytes) -> None:
        if self.transport is None:
            raise ExchangeLost("connection closed before sending", False)
        self.transport.write(data)

    def head(self) -> asyncio.Future[None]:
        """Resolves when the response head has arrived (await it)."""
        assert self._head is not None
        return self._head

    def done(self) -> asyncio.Future[None]:
        """Resolves when the whole response has arrived (await it)."""
        assert self._done is not None
        return self._done

    def pause_reading(self) -> None:
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.transport is not None:
            self.transport.resume_reading()

    # ------------------------------------------------------------ protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if not self.exchanging:
            # bytes nobody asked for: the connection cannot be trusted any more
            self.reusable = False
            self.close()
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as e:
            self.reusable = False
            self.fail(ExchangeLost(f"malformed response from the backend: {e}", self.status > 0))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.reusable = False
        self.pool.lost(self)
        detail = f"connection lost ({exc!r})" if exc else "connection closed by the backend"
        self.fail(ExchangeLost(detail, self.status > 0))

    def eof_received(self) -> bool:
        return False

    def expire(self) -> None:
        self.reusable = False
        self.fail(TimeoutError("no complete answer in time"))

    def fail(self, err: Exception) -> None:
        """End the exchange with ``err`` (once: later failures are ignored)."""
        if not self.exchanging:
            return
        self.exchanging = False
        listener, self.listener = self.listener, None
        if listener is not None:
            listener.on_fail(err)
            return
        for fut in (self._head, self._done):
            if fut is not None and not fut.done():
                fut.set_exception(err)
                # consumed by whoever awaits; keep asyncio quiet if nobody does
                fut.exception()

    def close(self) -> None:
        self.reusable = False
        if self.transport is not None:
            self.transport.close()

    # ------------------------------------------------------------ parser callbacks

    def on_status(self, status: bytes) -> None:
        self.reason += status

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))
        if len(name) == 14 and name.lower() == b"content-length":
            self.length = int(value)  # llhttp has checked it is a number

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if 100 <= status < 200:
            self.interim = True  # 1xx: not the answer; the real head follows
            self.headers, self.reason, self.length = [], b"", None
            return
        self.status = status
        self.keep_alive = self.parser.should_keep_alive()
        if self.head_only:
            # the answer to HEAD has no body whatever its headers say; httptools cannot
            # be told, so this connection is finished here and not reused
            self.reusable = False
            self._finish()
            return
        if self.listener is not None:
            self.listener.on_head()
        elif self._head is not None and not self._head.done():
            self._head.set_result(None)

    def on_body(self, body: bytes) -> None:
        self.body_started = True
        if self.head_only:
            return
        if self.sink is not None:
            self.sink(body)
        else:
            self.early.append(body)

    def on_message_complete(self) -> None:
        if self.interim:
            self.interim = False
            return
        if not self.keep_alive:
            self.reusable = False
        if self.exchanging:
            self._finish()

    def _finish(self) -> None:
        self.exchanging = False
        self.finished = True
        listener, self.listener = self.listener, None
        if listener is not None:
            listener.on_done()
            return
        if self._head is not None and not self._head.done():
            self._head.set_result(None)
        if self._done is not None and not self._done.done():
            self._done.set_result(None)


class UpstreamPool:
    """Idle keep-alive connections per backend (most recent first). A connection the
    backend closes while idle is a hint that the backend went away (``on_idle_lost``)."""

    def __init__(
        self,
        connect_timeout_s: float,
        idle_timeout_s: float,
        max_idle_per_backend: int,
        ssl_context: ssl.SSLContext | None = None,
        on_idle_lost: Callable[[str], None] | None = None,
    ) -> None:
        self.connect_timeout_s = connect_timeout_s
        self.idle_timeout_s = idle_timeout_s
        self.max_idle = max_idle_per_backend
        self.ssl = ssl_context
        self.on_idle_lost = on_idle_lost
        self.idle: dict[str, list[UpstreamConn]] = {}
        self.busy: dict[str, set[UpstreamConn]] = {}
        self.opened = 0

    def take(self, b: Backend) -> UpstreamConn | None:
        """The most recently used idle connection to ``b``, if any (no await: the
        common case costs no coroutine)."""
        idle = self.idle.get(b.id)
        while idle:
            conn = idle.pop()
            if conn.transport is not None and not conn.transport.is_closing():
                self.busy.setdefault(b.id, set()).add(conn)
                return conn
        return None

    async def connect(self, b: Backend) -> UpstreamConn:
        """A new connection to ``b``."""
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                _, proto = await loop.create_connection(
                    lambda: UpstreamConn(self, b.id), b.host, b.port, ssl=self.ssl
                )
        except ConnectionRefusedError as e:
            raise ConnectFailed(True, f"connection refused by {b.address}") from e
        except TimeoutError as e:
            raise ConnectFailed(False, f"connect to {b.address} timed out") from e
        except OSError as e:
            raise ConnectFailed(False, f"connect to {b.address} failed: {e.strerror or e}") from e
        self.opened += 1
        conn = proto
        self.busy.setdefault(b.id, set()).add(conn)
        return conn

    def put(self, conn: UpstreamConn) -> None:
        busy = self.busy.get(conn.backend_id)
        if busy is not None:
            busy.discard(conn)
        if not conn.reusable or conn.transport is None or conn.transport.is_closing():
            conn.close()
            return
        idle = self.idle.setdefault(conn.backend_id, [])
        if len(idle) >= self.max_idle:
            conn.close()
            return
        conn._head = conn._done = None
        conn.listener = None
        conn.sink = None
        conn.idle_since = conn.loop.time()
        idle.append(conn)

    def lost(self, conn: UpstreamConn) -> None:
        idle = self.idle.get(conn.backend_id)
        if idle is not None and conn in idle:
            idle.remove(conn)
            # closed by the backend while idle (ours are taken off the list first)
            if self.on_idle_lost is not None:
                self.on_idle_lost(conn.backend_id)
        busy = self.busy.get(conn.backend_id)
        if busy is not None:
            busy.discard(conn)

    def sweep(self, now: float) -> None:
        """Expire exchanges past their deadline; close connections idle longer than the
        idle timeout (before the backend's own keep-alive timeout closes them under a
        request)."""
        for busy in list(self.busy.values()):
            for late in [c for c in busy if c.exchanging and c.deadline < now]:
                late.expire()
        for conns in self.idle.values():
            while conns and now - conns[0].idle_since > self.idle_timeout_s:
                conns.pop(0).close()

    def drop_backend(self, backend_id: str, abort: bool) -> None:
        for conn in self.idle.pop(backend_id, []):
            conn.close()
        for conn in list(self.busy.pop(backend_id, set())):
            if abort and conn.transport is not None:
                conn.transport.abort()

    def close(self) -> None:
        for backend_id in list(self.idle):
            self.drop_backend(backend_id, abort=True)
        for conns in self.busy.values():
            for conn in conns:
                with contextlib.suppress(Exception):
                    conn.close()

    def counts(self) -> dict[str, Any]:
        return {
            "idle": sum(len(v) for v in self.idle.values()),
            "busy": sum(len(v) for v in self.busy.values()),
            "opened": self.opened,
        }
