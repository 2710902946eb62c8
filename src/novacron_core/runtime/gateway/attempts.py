"""Sending a request to the backends: the attempt loop and its rules, the request head
as it goes out, and the answer as it comes back (streamed, or held when small).

The rule for another attempt: the previous one certainly did not take effect (the
connection never opened; the node answered 503, its documented "not applied"), or taking
effect twice is harmless (safe methods; KV writes the node deduplicates by session).
Anything else that may have reached a node and then broke is answered "outcome unknown".
"""

from __future__ import annotations

import asyncio
import random
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from novacron_core.balancing import Choice, Outcome, PickContext, Refusal
from novacron_core.balancing import Request as BalRequest
from novacron_core.runtime.gateway.downstream import NOT_APPLIED, UNKNOWN, ClientConn, Request
from novacron_core.runtime.gateway.routes import SAFE_METHODS, Route, resend_safe
from novacron_core.runtime.gateway.upstream import ConnectFailed, ExchangeLost, UpstreamConn

if TYPE_CHECKING:
    from novacron_core.runtime.gateway.server import Gateway

HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"expect",
        b"content-length",
        b"x-forwarded-for",
        b"traceparent",
    }
)
RESPONSE_HOP = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"trailer"}
)
TRACEPARENT = re.compile(rb"^[0-9a-f]{2}-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}$")
LEARN_LIMIT = 64 << 10  # VM answers up to this size are parsed to learn the VM's home
_rand = random.Random()


@dataclass(slots=True)
class Buffered:
    """An upstream answer held in memory (lookups, replica fallbacks)."""

    status: int
    reason: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes
    backend_id: str


@dataclass(slots=True)
class Attempts:
    """Where a request's attempts stand (carried from the fast path to the slow one)."""

    deadline: float
    tried: set[str] = field(default_factory=set)
    count: int = 0
    last: str = ""
    last_status: int = 503
    maybe_applied: bool = False
    sent: float = 0.0
    backoff: bool = False  # the last answer was "not applied, try again": wait first


@dataclass(slots=True)
class Prepared:
    """A request as it goes to a backend, built once for all its attempts."""

    head: bytes
    body: bytes | None
    safe: bool


class Failed(Exception):
    """A problem answer decided inside an attempt loop."""

    def __init__(
        self, status: int, detail: str, outcome: str, retry_after: float | None = None
    ) -> None:
        super().__init__(detail)
        self.status, self.detail, self.outcome, self.retry_after = (
            status,
            detail,
            outcome,
            retry_after,
        )


class Sender:
    """The attempt machinery; :class:`~novacron_core.runtime.gateway.proxy.Proxy` adds
    where requests go."""

    def __init__(self, gw: Gateway) -> None:
        self.gw = gw
        self.cfg = gw.cfg
        self.loop = gw.loop
        self.pool = gw.pool
        self.balancer = gw.balancer
        self.stats = gw.stats
        self.proto = b"https" if gw.cfg.tls_cert else b"http"

    def prepare(self, req: Request, route: Route) -> Prepared:
        body = req.body.complete() if req.body.done else None
        if body is not None and not body and req.content_length is None and not req.chunked:
            body = None
        body_len = len(body) if body is not None else req.content_length
        head = self._request_head(req, req.url, req.method, body_len)
        index = req.index()
        safe = resend_safe(
            req.method, route, index.get(b"x-client-id"), index.get(b"x-request-seq")
        )
        return Prepared(head, body, safe)

    def refused(self, st: Attempts, route: Route, choice: Refusal) -> Failed:
        """What to answer when no backend is left to try."""
        self.stats.refuse("no_backend" if "available" in choice.reason else "limits")
        detail = choice.reason + (f"; last attempt: {st.last}" if st.last else "")
        if st.maybe_applied:  # an earlier attempt of this write may have taken effect
            return Failed(st.last_status, self._unknown(st.last, route), UNKNOWN)
        if st.last_status != 503:  # a read whose every attempt broke off
            return Failed(st.last_status, detail, NOT_APPLIED)
        return Failed(503, detail, NOT_APPLIED, choice.retry_after_s)

    def lost(
        self,
        st: Attempts,
        choice: Choice,
        up: UpstreamConn,
        err: Exception,
        req: Request,
        route: Route,
        prep: Prepared,
    ) -> None:
        """An attempt broke after (part of) the request was sent: account for it, and
        return when another attempt is allowed; raise the answer otherwise."""
        timed_out = isinstance(err, TimeoutError)
        self.balancer.release(self.loop.time(), choice, Outcome.GATEWAY_FAILURE, 0)
        self.stats.upstream_outcome(choice.region, "timeout" if timed_out else "lost")
        up.close()
        self.pool.put(up)
        st.tried.add(choice.backend.id)
        st.count += 1
        st.last = f"{choice.backend.id}: {'no answer in time' if timed_out else err}"
        st.last_status = 504 if timed_out else 502
        st.maybe_applied = st.maybe_applied or req.method not in SAFE_METHODS
        replayable = prep.body is not None or req.body.replayable
        if prep.safe and replayable and self.loop.time() < st.deadline:
            self.stats.retry("lost_idempotent")
            return
        if not st.maybe_applied:
            raise Failed(st.last_status, st.last, NOT_APPLIED)
        raise Failed(st.last_status, self._unknown(st.last, route), UNKNOWN)

    def not_applied(self, st: Attempts, choice: Choice, up: UpstreamConn) -> bool:
        """The node answered 503 (not applied: no leader or quorum). True when there is
        time to ask again (after a short wait); the answer has been read and released."""
        if self.loop.time() >= st.deadline:
            return False
        self.gw.discovery.nudge(choice.region)
        st.count += 1
        st.last = f"{choice.backend.id}: 503 {up.reason.decode('latin-1')}"
        st.backoff = True
        self.stats.retry("not_applied_503")
        return True

    async def _attempt(
        self,
        req: Request,
        route: Route,
        region: str,
        strict: bool,
        ctx: PickContext,
        prep: Prepared,
        st: Attempts,
    ) -> tuple[Choice, UpstreamConn]:
        """Send until a backend answers with a head that is not "not applied, try again";
        returns the attempt's ticket and connection (the answer's body still to read)."""
        loop = self.loop
        affinity = self.gw.affinity_header
        head, body = prep.head, prep.body
        while True:
            if st.backoff:
                st.backoff = False
                delay = min(0.4, 0.025 * 2 ** min(st.count, 5)) * (0.5 + _rand.random())
                await asyncio.sleep(min(delay, max(0.0, st.deadline - loop.time())))
            now = loop.time()
            key = None if affinity is None else req.header(affinity)
            choice = self.balancer.acquire(
                now,
                BalRequest(
                    region, strict, route.write, key, ctx, frozenset(st.tried), st.count > 0
                ),
            )
            if isinstance(choice, Refusal):
                raise self.refused(st, route, choice)
            b = choice.backend
            try:
                up = self.pool.take(b) or await self.pool.connect(b)
            except ConnectFailed as e:
                failure = Outcome.REFUSED if e.refused else Outcome.GATEWAY_FAILURE
                self.balancer.release(loop.time(), choice, failure, 0)
                self.stats.upstream_outcome(choice.region, "refused" if e.refused else "connect")
                st.last = str(e)
                st.tried.add(b.id)
                st.count += 1
                self.stats.retry("connect_failed")
                continue  # nothing was sent: always safe
            except BaseException:
                self.balancer.cancel(choice)
                raise
            st.sent = loop.time()
            up.begin(req.method == "HEAD", st.sent + self.cfg.upstream_timeout_s)
            try:
                up.send(head + body if body else head)
                if body is None and (req.chunked or req.content_length):
                    await self._send_streamed(up, req)
                await up.head()
            except (ExchangeLost, TimeoutError) as e:
                self.lost(st, choice, up, e, req, route, prep)
                continue
            except BaseException:
                self.balancer.release(loop.time(), choice, Outcome.NEUTRAL, 0)
                up.close()
                self.pool.put(up)
                raise
            if up.status == 503 and self.not_applied(st, choice, up):
                await self._discard(up, choice, Outcome.NEUTRAL, loop.time() - st.sent)
                continue
            return choice, up

    @staticmethod
    def _unknown(last: str, route: Route) -> str:
        return f"{last}; the request may have been applied. " + (
            "Retry with the same X-Client-Id/X-Request-Seq to get exactly-once."
            if route.session_aware
            else "Read the resource to find out before retrying."
        )

    async def _send_streamed(self, up: UpstreamConn, req: Request) -> None:
        chunked = req.content_length is None
        async for chunk in req.body.stream():
            if not chunk:
                continue
            up.send(b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked else chunk)
        if chunked:
            up.send(b"0\r\n\r\n")

    async def _discard(self, up: UpstreamConn, choice: Choice, outcome: Outcome, t: float) -> None:
        try:
            await up.done()
        except (ExchangeLost, TimeoutError):
            up.close()
        self.balancer.release(self.loop.time(), choice, outcome, t)
        self.stats.upstream_outcome(choice.region, outcome.value)
        self.pool.put(up)

    def _request_head(self, req: Request, url: bytes, method: str, body_len: int | None) -> bytes:
        parts = [method.encode(), b" ", url, b" HTTP/1.1\r\n"]
        xff: bytes | None = None
        trace: bytes | None = None
        host = False
        for k, v in req.headers:
            lk = k.lower()
            host = host or lk == b"host"
            if lk in HOP_BY_HOP:
                if lk == b"x-forwarded-for":
                    xff = v
                elif lk == b"traceparent" and _valid_traceparent(v):
                    trace = v
                continue
            parts += (k, b": ", v, b"\r\n")
        if not host:  # HTTP/1.0 clients and our own lookups: HTTP/1.1 requires one
            parts.append(b"Host: novacron-gateway\r\n")
        ip = req.client_ip.encode()
        parts += (b"X-Forwarded-For: ", xff + b", " + ip if xff else ip, b"\r\n")
        parts += (b"X-Forwarded-Proto: ", self.proto, b"\r\n")
        if trace is None:
            trace = b"00-%032x-%016x-01" % (_rand.getrandbits(128) | 1, _rand.getrandbits(64) | 1)
        parts += (b"traceparent: ", trace, b"\r\n")
        if body_len is not None:
            parts.append(b"Content-Length: %d\r\n" % body_len)
        elif req.chunked:
            parts.append(b"Transfer-Encoding: chunked\r\n")
        parts.append(b"\r\n")
        return b"".join(parts)

    async def _relay(
        self, conn: ClientConn, req: Request, up: UpstreamConn, choice: Choice
    ) -> None:
        length = _content_length(up.headers)
        no_body = req.method == "HEAD" or up.status in (204, 304)
        chunked = length is None and not no_body
        conn.state = "responding"
        head = self.response_head(conn, req, up, choice, length, chunked)
        if up.complete and not chunked:
            # the whole answer came in one read (the common case): one write, one syscall
            conn.write(head + b"".join(up.take_early()))
            return
        conn.write(head)
        if chunked:
            up.set_sink(lambda d: conn.write(b"%x\r\n%s\r\n" % (len(d), d)))
        else:
            up.set_sink(conn.write)
        conn.upstream = up
        if conn.write_paused:
            up.pause_reading()
        await up.done()
        if chunked:
            conn.write(b"0\r\n\r\n")

    def response_head(
        self,
        conn: ClientConn,
        req: Request,
        up: UpstreamConn,
        choice: Choice,
        length: int | None,
        chunked: bool = False,
    ) -> bytes:
        parts = [b"HTTP/1.1 %d " % up.status, up.reason, b"\r\n"]
        for k, v in up.headers:
            lk = k.lower()
            if lk in RESPONSE_HOP or lk == b"content-length":
                continue
            parts += (k, b": ", v, b"\r\n")
        if length is not None:
            parts.append(b"Content-Length: %d\r\n" % length)
        elif chunked:
            parts.append(b"Transfer-Encoding: chunked\r\n")
        parts += (b"X-Novacron-Backend: ", choice.backend.id.encode(), b"\r\n")
        if conn.must_close():
            parts.append(b"Connection: close\r\n")
        parts.append(b"\r\n")
        return b"".join(parts)

    def _write_buffered(self, conn: ClientConn, req: Request, ans: Buffered) -> None:
        conn.state = "responding"
        parts = [b"HTTP/1.1 %d " % ans.status, ans.reason, b"\r\n"]
        for k, v in ans.headers:
            if k.lower() not in RESPONSE_HOP and k.lower() != b"content-length":
                parts += (k, b": ", v, b"\r\n")
        parts.append(b"Content-Length: %d\r\n" % len(ans.body))
        parts += (b"X-Novacron-Backend: ", ans.backend_id.encode(), b"\r\n")
        if conn.must_close():
            parts.append(b"Connection: close\r\n")
        parts += (b"\r\n", b"" if req.method == "HEAD" else ans.body)
        conn.write(b"".join(parts))

    async def _fetch(self, region: str, method: str, path: str, ctx: PickContext) -> Buffered:
        """A safe internal request to one region, answered in memory."""
        fake = Request()
        fake.method, fake.url, fake.path = method, path.encode(), path.partition("?")[0]
        fake.client_ip = ctx.client_ip
        fake.headers = [(b"Accept", b"application/json")]
        from novacron_core.runtime.gateway.downstream import Body

        fake.body = Body(None, 0)
        fake.body.finish()
        route = Route("region", False)
        prep = Prepared(self._request_head(fake, fake.url, method, None), None, True)
        st = Attempts(self.loop.time() + self.cfg.retry_window_s)
        choice, up = await self._attempt(fake, route, region, True, ctx, prep, st)
        chunks: list[bytes] = []
        up.set_sink(chunks.append)
        t0 = st.sent
        try:
            await up.done()
        except (ExchangeLost, TimeoutError) as e:
            self.balancer.release(self.loop.time(), choice, Outcome.GATEWAY_FAILURE, 0)
            up.close()
            self.pool.put(up)
            raise Failed(503, f"{choice.backend.id}: {e}", NOT_APPLIED) from None
        except BaseException:
            self.balancer.release(self.loop.time(), choice, Outcome.NEUTRAL, 0)
            up.close()
            self.pool.put(up)
            raise
        self.balancer.release(
            self.loop.time(), choice, outcome_of(up.status), self.loop.time() - t0
        )
        self.pool.put(up)
        return Buffered(up.status, up.reason, up.headers, b"".join(chunks), choice.backend.id)


def outcome_of(status: int) -> Outcome:
    """What an answer says about the backend that gave it. The nodes are proxies too: a
    502/503/504 or 429 from one explains a problem elsewhere (no leader, the leader gone,
    busy), so it does not count against the node itself."""
    if status < 500:
        return Outcome.NEUTRAL if status == 429 else Outcome.SUCCESS
    if status in (502, 503, 504):
        return Outcome.NEUTRAL
    return Outcome.SERVER_ERROR


def _content_length(headers: list[tuple[bytes, bytes]]) -> int | None:
    for k, v in headers:
        if len(k) == 14 and k.lower() == b"content-length":
            try:
                return int(v)
            except ValueError:
                return None
    return None


def _valid_traceparent(v: bytes) -> bool:
    m = TRACEPARENT.match(v)
    if m is None:
        return False
    return m.group(1) != b"0" * 32 and m.group(2) != b"0" * 16 and v[:2] != b"ff"
