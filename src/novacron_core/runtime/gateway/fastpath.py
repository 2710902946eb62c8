"""The common case without a task: a request whose body has arrived, to a backend with an
idle keep-alive connection, answered in one go.

Everything happens in callbacks: the client connection's parser completes a request, the
balancer picks a backend, the request goes out on a pooled connection, and that
connection's parser delivers the answer straight to the client. No task, no future, no
await: those cost more than the rest of the work together. Anything out of the ordinary
hands over to the coroutine path (``Proxy.resume``) with the attempt's state, before a
byte of the answer went to the client: a retry after "not applied" or a broken
connection, a backend with no idle connection, a VM whose home is not known yet.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from novacron_core.balancing import Choice, Outcome, PickContext, Refusal
from novacron_core.balancing import Request as BalRequest
from novacron_core.runtime.gateway.attempts import Attempts, Failed, Prepared, outcome_of
from novacron_core.runtime.gateway.downstream import UNKNOWN, ClientConn, Fast, Request
from novacron_core.runtime.gateway.proxy import Proxy
from novacron_core.runtime.gateway.routes import Route, classify
from novacron_core.runtime.gateway.upstream import UpstreamConn

if TYPE_CHECKING:
    from novacron_core.runtime.gateway.server import Gateway

NO_TRIES: frozenset[str] = frozenset()
REQUEST_CACHE = 4096  # (region, strict, write, client address) -> the balancer's request
BUFFER_LIMIT = 64 << 10  # answers up to this size are written with their head, in one write


class FastPath:
    def __init__(self, gw: Gateway, proxy: Proxy) -> None:
        self.gw = gw
        self.proxy = proxy
        self.balancer = gw.balancer
        self.pool = gw.pool
        self.loop = gw.loop
        self.requests: dict[tuple[str, bool, bool, str], BalRequest] = {}

    def __call__(self, conn: ClientConn, req: Request) -> bool:
        """Take ``req`` (True) or leave it to the coroutine path (False)."""
        if not req.body.done:
            return False
        gw, proxy = self.gw, self.proxy
        route = classify(req.method, req.path)
        kind = route.kind
        if kind == "gateway":
            proxy.account(req, route, gw.serve_own(conn, req, route))
            conn.request_done(req)
            return True
        if kind != "region" and kind != "vm_create" and kind != "vm":
            return False
        if gw.inflight >= gw.cfg.max_inflight:
            return False  # the coroutine path answers 429 with its reasons
        try:
            region, point = proxy.origin(req)
        except Failed as f:
            proxy.fail(conn, f)
            proxy.account(req, route, f.status)
            conn.request_done(req)
            return True
        learn = kind != "region"
        strict = True
        if kind == "vm":
            home = gw.homes.get(route.vm_id or "")
            if home is None:
                return False  # to be looked up first
            region = home
        elif kind == "vm_create":
            strict = req.header(b"x-novacron-region") is not None
        affinity = gw.affinity_header
        key = None if affinity is None else req.header(affinity)
        if point is None and key is None:
            # the common case: the same few (region, strictness, write, client) again and
            # again; the balancer's request for them is made once (it only reads it, but
            # for the group it sets on the context just before each pick)
            ck = (region, strict, route.write, req.client_ip)
            bal_req = self.requests.get(ck)
            if bal_req is None:
                if len(self.requests) >= REQUEST_CACHE:
                    self.requests.clear()
                ctx = PickContext(req.client_ip, None, region)
                bal_req = BalRequest(region, strict, route.write, None, ctx, NO_TRIES, False)
                self.requests[ck] = bal_req
            ctx = bal_req.ctx
        else:
            ctx = PickContext(req.client_ip, point, region)
            bal_req = BalRequest(region, strict, route.write, key, ctx, NO_TRIES, False)
        now = self.loop.time()
        choice = self.balancer.acquire(now, bal_req)
        if isinstance(choice, Refusal):
            return False  # the coroutine path words the refusal (and VM fallbacks)
        up = self.pool.take(choice.backend)
        if up is None:
            self.balancer.cancel(choice)
            return False  # a new connection: that awaits
        prep = proxy.prepare(req, route)
        gw.inflight += 1
        ex = Exchange(self, conn, req, route, (region, strict, ctx, learn), choice, up, now, prep)
        up.begin(req.method == "HEAD", now + gw.cfg.upstream_timeout_s, ex)
        body = prep.body
        try:
            up.send(prep.head + body if body else prep.head)
        except Exception as e:  # closed under us: treat as a broken attempt
            up.fail(e)
        return True


class Exchange:
    """One attempt of the fast path, driven by the upstream connection's callbacks."""

    __slots__ = (
        "_st",
        "choice",
        "chunked",
        "conn",
        "fp",
        "placement",
        "prep",
        "req",
        "route",
        "sent",
        "streaming",
        "up",
    )

    def __init__(
        self,
        fp: FastPath,
        conn: ClientConn,
        req: Request,
        route: Route,
        placement: tuple[str, bool, PickContext, bool],
        choice: Choice,
        up: UpstreamConn,
        sent: float,
        prep: Prepared,
    ) -> None:
        self.fp, self.conn, self.req, self.route = fp, conn, req, route
        self.placement, self.choice, self.up, self.sent, self.prep = (
            placement,
            choice,
            up,
            sent,
            prep,
        )
        self._st: Attempts | None = None
        self.streaming = False
        self.chunked = False

    @property
    def st(self) -> Attempts:
        """The attempts' state, made only when a retry needs it (rarely)."""
        if self._st is None:
            self._st = Attempts(self.sent + self.fp.gw.cfg.retry_window_s, sent=self.sent)
        return self._st

    def on_head(self) -> None:
        up = self.up
        status = up.status
        if status == 503:
            return  # read it whole, then decide (retry)
        length = up.length
        if length is not None and length <= BUFFER_LIMIT:
            return  # small: written with its head when complete
        # large or open-ended: stream it through as it comes
        conn, proxy = self.conn, self.fp.proxy
        no_body = self.req.method == "HEAD" or status in (204, 304)
        self.chunked = length is None and not no_body
        conn.state = "responding"
        conn.write(proxy.response_head(conn, self.req, up, self.choice, length, self.chunked))
        self.streaming = True
        if self.chunked:
            up.set_sink(lambda d: conn.write(b"%x\r\n%s\r\n" % (len(d), d)))
        else:
            up.set_sink(conn.write)
        conn.upstream = up
        if conn.write_paused:
            up.pause_reading()

    def on_done(self) -> None:
        fp, up, conn, choice, req = self.fp, self.up, self.conn, self.choice, self.req
        proxy, balancer, now = fp.proxy, fp.balancer, fp.loop.time()
        status = up.status
        if status == 503 and not self.streaming and proxy.not_applied(self.st, choice, up):
            up.take_early()
            balancer.release(now, choice, Outcome.NEUTRAL, now - self.sent)
            proxy.stats.upstream_outcome(choice.region, "neutral")
            fp.pool.put(up)
            self._hand_over()
            return
        if self.streaming:
            if self.chunked:
                conn.write(b"0\r\n\r\n")
            conn.upstream = None
        else:
            body = b"".join(up.take_early())
            if self.placement[3] and self.route.vm_id is not None:
                if status == 404:
                    fp.gw.homes.forget(self.route.vm_id)
                elif status in (200, 201):
                    proxy.learn_home(self.route.vm_id, up.headers, body, choice.region)
            elif self.placement[3] and status in (200, 201):
                proxy.learn_home("", up.headers, body, choice.region)
            conn.state = "responding"
            length = len(body) if req.method != "HEAD" else up.length
            conn.write(proxy.response_head(conn, req, up, choice, length) + body)
        outcome = outcome_of(status)
        balancer.release(now, choice, outcome, now - self.sent)
        proxy.stats.upstream_outcome(choice.region, outcome.value)
        if conn.closing:
            up.close()
        fp.pool.put(up)
        self._finish(status)

    def on_fail(self, err: Exception) -> None:
        fp, conn = self.fp, self.conn
        proxy = fp.proxy
        conn.upstream = None
        if self.streaming:  # part of the answer already went out: cut the client off
            fp.balancer.release(fp.loop.time(), self.choice, Outcome.GATEWAY_FAILURE, 0)
            self.up.close()
            fp.pool.put(self.up)
            proxy.fail(conn, Failed(502, f"{self.choice.backend.id} broke off", UNKNOWN))
            self._finish(502)
            return
        try:
            proxy.lost(self.st, self.choice, self.up, err, self.req, self.route, self.prep)
        except Failed as f:
            proxy.fail(conn, f)
            self._finish(f.status)
            return
        self._hand_over()

    def _hand_over(self) -> None:
        """Retry in the coroutine path, which owns the rest of the request."""
        proxy = self.fp.proxy
        work = proxy.resume(self.conn, self.req, self.route, self.placement, self.st, self.prep)
        self.conn.run(self.req, work)

    def _finish(self, status: int) -> None:
        self.fp.gw.inflight -= 1
        self.fp.proxy.account(self.req, self.route, status)
        self.conn.request_done(self.req)


def admin_fast(gw: Gateway) -> Fast:
    """The admin listener: only the gateway's own endpoints, always answered at once."""

    def serve(conn: ClientConn, req: Request) -> bool:
        route = classify(req.method, req.path)
        status = gw.serve_own(conn, req, route)
        gw.proxy.account(req, Route("admin_port", False), status)
        conn.request_done(req)
        return True

    return serve
