"""The client side of the gateway: HTTP/1.1 on an asyncio protocol, parsed by httptools
(llhttp, Node.js's parser: strict about framing, so a request cannot smuggle another).

One :class:`ClientConn` per connection. It parses requests as bytes arrive and hands each
complete head to the handler (a coroutine per request, one request at a time per
connection: pipelined requests queue). Everything a client controls is bounded: head size
and header count (431), URL length (414), body size (413), time to send a head (408), idle
keep-alive time, requests queued behind a pipeline. A malformed request gets 400 and its
connection is closed; nothing it sent reaches a backend or touches another connection.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import httptools

if TYPE_CHECKING:
    from novacron_core.runtime.gateway.upstream import UpstreamConn

REASONS = {
    200: "OK",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    413: "Content Too Large",
    414: "URI Too Long",
    422: "Unprocessable Content",
    429: "Too Many Requests",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}
NOT_APPLIED, UNKNOWN = "not_applied", "unknown"


@dataclass(frozen=True, slots=True)
class Limits:
    max_head_bytes: int = 16 << 10
    max_headers: int = 100
    max_url_bytes: int = 8 << 10
    max_body_bytes: int = 4 << 20  # the nodes' own limit (aiohttp client_max_size)
    header_timeout_s: float = 10.0
    keepalive_timeout_s: float = 60.0
    max_pipeline: int = 16
    body_buffer_bytes: int = 256 << 10  # unsent request body held before reading pauses


class TooLarge(Exception):
    def __init__(self, status: int, detail: str) -> None:
        self.status, self.detail = status, detail


class Body:
    """A request body as it arrives. Chunks are kept (so a retry can send them again)
    while the total stays under ``replay_limit``; past it, sent chunks are dropped and
    the body can no longer be replayed."""

    __slots__ = ("_waiter", "chunks", "conn", "done", "replay_limit", "replayable", "size")

    def __init__(self, conn: ClientConn | None, replay_limit: int) -> None:
        self.chunks: list[bytes] = []
        self.size = 0
        self.done = False
        self.replayable = True
        self.replay_limit = replay_limit
        self.conn = conn
        self._waiter: asyncio.Future[None] | None = None

    def feed(self, data: bytes) -> None:
        self.chunks.append(data)
        self.size += len(data)
        if self.size > self.replay_limit:
            self.replayable = False
        self._wake()

    def finish(self) -> None:
        self.done = True
        self._wake()

    def _wake(self) -> None:
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    async def stream(self) -> Any:
        """Yield the body's chunks from the start (again, on a retry of a replayable body)."""
        i = 0
        while True:
            while i < len(self.chunks):
                chunk = self.chunks[i]
                if not self.replayable:
                    self.chunks[i] = b""
                i += 1
                yield chunk
            if self.done:
                return
            if self.conn is not None:
                self.conn.resume_body()
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
            self._waiter = None

    def complete(self) -> bytes | None:
        """The whole body, when it has fully arrived and is still held."""
        if not self.done or not self.replayable:
            return None
        return self.chunks[0] if len(self.chunks) == 1 else b"".join(self.chunks)


class Request:
    __slots__ = (
        "_index",
        "body",
        "chunked",
        "client_ip",
        "content_length",
        "early",
        "headers",
        "keep_alive",
        "method",
        "path",
        "query",
        "started",
        "url",
        "version",
    )

    def __init__(self) -> None:
        self.method = ""
        self.url = b""
        self.path = ""
        self.query = b""
        self.version = "1.1"
        self.headers: list[tuple[bytes, bytes]] = []
        self.keep_alive = True
        self.body: Body
        self.chunked = False
        self.content_length: int | None = None
        self.early = False  # dispatched before its body arrived (streamed)
        self.client_ip = ""
        self.started = 0.0
        self._index: dict[bytes, bytes] | None = None

    def header(self, name: bytes) -> bytes | None:
        """A header's value by lower-case name (the last one, if repeated)."""
        if self._index is None:
            self._index = {k.lower(): v for k, v in self.headers}
        return self._index.get(name)

    def index(self) -> dict[bytes, bytes]:
        """Headers by lower-case name (built once)."""
        if self._index is None:
            self._index = {k.lower(): v for k, v in self.headers}
        return self._index


Handler = Callable[["ClientConn", Request], Awaitable[None]]
# Serve a request without a task when it can: True when it took the request (answered it,
# or started an exchange that will call ``request_done``); False: run the handler.
Fast = Callable[["ClientConn", Request], bool]


class ClientConn(asyncio.Protocol):
    """One client connection. ``state``: idle (between requests), head (reading one),
    busy (a handler runs); the gateway's sweep enforces the timeouts from these."""

    __slots__ = (
        "_head_bytes",
        "_paused_body",
        "_reading",
        "_task",
        "active",
        "client_ip",
        "close_after",
        "closing",
        "current",
        "fast",
        "gw",
        "handler",
        "last_active",
        "limits",
        "loop",
        "parser",
        "queue",
        "state",
        "transport",
        "upstream",
        "write_paused",
    )

    def __init__(self, gw: Any, fast: Fast, handler: Handler, limits: Limits) -> None:
        self.gw = gw
        self.fast = fast
        self.handler = handler
        self.active = False
        self.limits = limits
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.parser: httptools.HttpRequestParser | None = None
        # requests parsed and not yet answered (a list: an empty deque costs ~600 bytes a
        # connection, and pipelines are short)
        self.queue: list[Request] = []
        self.current: Request | None = None  # being parsed
        self._task: asyncio.Task[None] | None = None
        self.state = "idle"
        self.last_active = self.loop.time()
        self._head_bytes = 0
        self._paused_body = False
        self._reading = True
        self.closing = False
        self.close_after = False
        self.client_ip = ""
        self.upstream: UpstreamConn | None = None  # streaming a response from it
        self.write_paused = False

    # ------------------------------------------------------------ connection events

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self.client_ip = peer[0] if isinstance(peer, tuple) else ""
        if not self.gw.admit_connection(self):
            self.send_problem(503, "too many client connections: retry later", NOT_APPLIED, 1)
            self.close()
            return
        self.parser = httptools.HttpRequestParser(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        self.gw.forget_connection(self)
        if self._task is not None and not self._task.done():
            self._task.cancel()
        if self.current is not None:
            self.current.body.finish()
        if self.upstream is not None:
            # an answer was streaming to us, maybe paused for our full socket: let it run to
            # its end (dropped here) rather than stall and be blamed on the backend
            self.upstream.resume_reading()
        self.transport = None

    def data_received(self, data: bytes) -> None:
        if self.parser is None or self.closing:
            return
        self.last_active = self.loop.time()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._reject(501, "protocol upgrades (WebSocket, h2c) are not supported")
        except httptools.HttpParserCallbackError as e:
            cause = e.__context__
            if isinstance(cause, TooLarge):
                self._reject(cause.status, cause.detail)
            else:
                self._reject(400, "malformed request")
        except httptools.HttpParserError as e:
            self._reject(400, f"malformed request: {_parser_detail(e)}")

    def eof_received(self) -> bool:
        # A client half-closing after its request still gets the answer.
        return self.state == "busy"

    def pause_writing(self) -> None:
        self.write_paused = True
        if self.upstream is not None:
            self.upstream.pause_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.upstream is not None:
            self.upstream.resume_reading()

    # ------------------------------------------------------------ parser callbacks

    def on_message_begin(self) -> None:
        req = Request()
        req.client_ip = self.client_ip
        req.started = self.loop.time()
        req.body = Body(self, self.gw.replay_limit)
        self.current = req
        self._head_bytes = 0
        if self.state == "idle":
            self.state = "head"
            self.last_active = req.started

    def on_url(self, url: bytes) -> None:
        req = self.current
        assert req is not None
        req.url += url
        if len(req.url) > self.limits.max_url_bytes:
            raise TooLarge(414, f"URL longer than {self.limits.max_url_bytes} bytes")

    def on_header(self, name: bytes, value: bytes) -> None:
        req = self.current
        assert req is not None
        req.headers.append((name, value))
        self._head_bytes += len(name) + len(value) + 4
        if self._head_bytes > self.limits.max_head_bytes:
            raise TooLarge(431, f"request head larger than {self.limits.max_head_bytes} bytes")
        if len(req.headers) > self.limits.max_headers:
            raise TooLarge(431, f"more than {self.limits.max_headers} header fields")

    def on_headers_complete(self) -> None:
        req = self.current
        assert req is not None
        assert self.parser is not None
        req.method = self.parser.get_method().decode("ascii", "replace")
        req.version = self.parser.get_http_version()
        req.keep_alive = self.parser.should_keep_alive()
        path, _, query = req.url.partition(b"?")
        req.path = path.decode("latin-1")
        req.query = query
        index = req.index()
        cl = index.get(b"content-length")
        if cl is not None:
            req.content_length = int(cl)  # llhttp already refused a malformed one
            if req.content_length > self.limits.max_body_bytes:
                raise TooLarge(413, f"body larger than {self.limits.max_body_bytes} bytes")
        te = index.get(b"transfer-encoding")
        req.chunked = te is not None and b"chunked" in te.lower()
        if b"expect" in index and self.transport is not None:
            # we read bodies ourselves (and strip Expect upstream): say go ahead
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        self.queue.append(req)
        if len(self.queue) > self.limits.max_pipeline:
            raise TooLarge(429, "too many pipelined requests")
        # a body that will take a while streams through: dispatch before it has arrived
        req.early = req.chunked or (req.content_length or 0) > self.gw.replay_limit
        if req.early and not self.active and self.queue[0] is req:
            self._dispatch()

    def on_body(self, body: bytes) -> None:
        req = self.current
        assert req is not None
        b = req.body
        if b.size + len(body) > self.limits.max_body_bytes:
            raise TooLarge(413, f"body larger than {self.limits.max_body_bytes} bytes")
        b.feed(body)
        if b.size > self.limits.body_buffer_bytes and self._reading and self.transport:
            self._paused_body = True
            self._reading = False
            self.transport.pause_reading()

    def on_message_complete(self) -> None:
        req = self.current
        assert req is not None
        req.body.finish()
        self.current = None
        if not self.active and self.queue and self.queue[0] is req:
            self._dispatch()
        elif len(self.queue) > 1 and self._reading and self.transport is not None:
            # one request at a time: read the next once this one is answered
            self._reading = False
            self.transport.pause_reading()

    def resume_body(self) -> None:
        if self._paused_body and self.transport is not None and not self.closing:
            self._paused_body = False
            self._reading = True
            self.transport.resume_reading()

    # ------------------------------------------------------------ serving

    def _dispatch(self) -> None:
        req = self.queue[0]
        self.active = True
        self.state = "busy"
        if not self.fast(self, req):
            self.run(req, self.handler(self, req))

    def run(self, req: Request, work: Awaitable[None]) -> None:
        """Finish serving ``req`` in a task (the handler, or a hand-over from the fast
        path); ``request_done`` follows when it ends."""
        self._task = self.loop.create_task(self._run(req, work))

    async def _run(self, req: Request, work: Awaitable[None]) -> None:
        try:
            await work
        except asyncio.CancelledError:
            raise
        except Exception:
            self.gw.log.exception("handler failed for %s %s", req.method, req.url)
            if self.state != "responding":
                self.send_problem(500, "internal gateway error", UNKNOWN)
            self.close()
        self._task = None
        self.request_done(req)

    def request_done(self, req: Request) -> None:
        """``req`` is answered: serve the next one, or wait for it."""
        self.active = False
        if self.queue and self.queue[0] is req:
            self.queue.pop(0)
        if self.closing:
            return
        if not req.keep_alive or self.gw.stopping or self.close_after or not req.body.done:
            # (an answer sent before the whole body arrived: the rest of the body cannot
            # be told apart from the next request on this connection)
            self.close()
            return
        if self.queue and (self.queue[0].body.done or self.queue[0].early):
            self._dispatch()
            return
        self.state = "head" if self.current is not None else "idle"
        self.last_active = self.loop.time()
        if not self._reading and self.transport is not None:
            self._reading = True
            self.transport.resume_reading()

    def close(self) -> None:
        if self.transport is not None and not self.closing:
            self.closing = True
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.closing = True
            self.transport.abort()

    def _reject(self, status: int, detail: str) -> None:
        """A request we will not serve: answer it and close (the client cannot
        resynchronise with our parser). Behind a request still being served (pipelined),
        that one is answered first and the connection closes after it."""
        self.gw.stats.rejected(status)
        self.parser = None
        if self.active:
            self.queue = [self.queue[0]]
            self.close_after = True
            return
        self.queue.clear()
        self.send_problem(status, detail, NOT_APPLIED, 1 if status == 429 else None)
        self.close()

    # ------------------------------------------------------------ writing answers

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.closing:
            self.transport.write(data)

    def send_problem(
        self,
        status: int,
        detail: str,
        outcome: str,
        retry_after: float | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        """An RFC 9457 problem document; ``outcome`` says whether the request certainly
        did not take effect (``not_applied``) or may have (``unknown``)."""
        doc = {
            "type": "about:blank",
            "title": REASONS.get(status, "Error"),
            "status": status,
            "detail": detail,
            "outcome": outcome,
            **(extra or {}),
        }
        headers = [(b"Content-Type", b"application/problem+json")]
        headers.append((b"X-Novacron-Outcome", outcome.replace("_", "-").encode()))
        if retry_after is not None:
            headers.append((b"Retry-After", str(max(1, round(retry_after))).encode()))
        self.send_simple(status, json.dumps(doc).encode(), headers)

    def send_json(self, status: int, doc: Any) -> None:
        body = json.dumps(doc, indent=1).encode()
        self.send_simple(status, body, [(b"Content-Type", b"application/json")])

    def send_simple(self, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
        parts = [b"HTTP/1.1 %d %s\r\n" % (status, REASONS.get(status, "Unknown").encode())]
        for k, v in headers:
            parts += (k, b": ", v, b"\r\n")
        parts.append(b"Content-Length: %d\r\n" % len(body))
        if self.must_close():
            parts.append(b"Connection: close\r\n")
        parts += (b"\r\n", body)
        self.write(b"".join(parts))

    def must_close(self) -> bool:
        req = self.queue[0] if self.queue else None
        return (
            self.closing
            or self.close_after
            or self.gw.stopping
            or req is None
            or not req.keep_alive
        )


def _parser_detail(e: Exception) -> str:
    text = str(e) or type(e).__name__
    return text.split(": ", 1)[-1][:120]
