"""One request through the gateway: where it goes, how often it may be tried, and what
the client is told when it cannot be served.

Retries follow one rule: a request is sent again only when the first attempt certainly
did not take effect, or when taking effect twice is harmless. Certainly not applied: the
connection never opened (refused, timed out), or the node answered 503 (no leader or no
quorum: its documented "not applied"). Harmless twice: GET/HEAD/OPTIONS, and KV writes
carrying ``X-Client-Id``/``X-Request-Seq`` (the node answers a repeat with the first
outcome). Anything else that may have reached a node before the connection broke is
answered 502 (or 504 on a timeout) with ``"outcome": "unknown"``: the gateway cannot know
whether it was applied, and says so.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from novacron_core.balancing import GeoPoint, Outcome, PickContext
from novacron_core.runtime.gateway.attempts import (
    LEARN_LIMIT,
    Attempts,
    Buffered,
    Failed,
    Prepared,
    Sender,
    outcome_of,
)
from novacron_core.runtime.gateway.downstream import NOT_APPLIED, UNKNOWN, ClientConn, Request
from novacron_core.runtime.gateway.routes import Route, classify
from novacron_core.runtime.gateway.upstream import ExchangeLost

if TYPE_CHECKING:
    from novacron_core.runtime.gateway.server import Gateway

__all__ = ["Attempts", "Buffered", "Failed", "Prepared", "Proxy"]


class Proxy(Sender):
    def __init__(self, gw: Gateway) -> None:
        super().__init__(gw)
        self.warned_regions: set[str] = set()

    async def handle(self, conn: ClientConn, req: Request) -> None:
        route = classify(req.method, req.path)
        status = 0
        gw = self.gw
        if route.kind == "gateway":
            status = gw.serve_own(conn, req, route)
        elif gw.inflight >= self.cfg.max_inflight:
            self.stats.refuse("max_inflight")
            conn.send_problem(
                429, "too many requests in flight at this gateway: retry later", NOT_APPLIED, 1
            )
            status = 429
        else:
            gw.inflight += 1
            try:
                status = await self._proxy(conn, req, route)
            except Failed as f:
                status = f.status
                self.fail(conn, f)
            finally:
                gw.inflight -= 1
        self.account(req, route, status)
        conn.state = "busy"

    def account(self, req: Request, route: Route, status: int) -> None:
        now = self.loop.time()
        self.stats.request(now, route.kind, status, now - req.started)

    def fail(self, conn: ClientConn, f: Failed) -> None:
        if f.outcome == UNKNOWN:
            self.stats.outcome_unknown += 1
        if conn.state != "responding":
            conn.send_problem(f.status, f.detail, f.outcome, f.retry_after)
        else:
            conn.abort()  # mid-response: the client sees a truncated answer

    async def resume(
        self,
        conn: ClientConn,
        req: Request,
        route: Route,
        placement: tuple[str, bool, PickContext, bool],
        st: Attempts,
        prep: Prepared,
    ) -> None:
        """The rest of a request the fast path started (a retry it handed over)."""
        region, strict, ctx, learn = placement
        status = 0
        try:
            status = await self._stream(conn, req, route, region, strict, ctx, learn, st, prep)
        except Failed as f:
            status = f.status
            self.fail(conn, f)
        finally:
            self.gw.inflight -= 1
            self.account(req, route, status)

    def origin(self, req: Request) -> tuple[str, GeoPoint | None]:
        """The client's region: its hint, else the gateway's own; and its location."""
        index = req.index()
        hint = index.get(b"x-novacron-region")
        region = self.gw.home_region
        if hint is not None:
            name = hint.decode("latin-1").strip()
            if name not in self.balancer.regions():
                known = ", ".join(self.balancer.regions()) or "none yet"
                raise Failed(
                    400,
                    f"X-Novacron-Region: unknown region {name!r} (known: {known})",
                    NOT_APPLIED,
                )
            region = name
        loc = index.get(b"x-client-location")
        point = None
        if loc is not None:
            try:
                point = GeoPoint.parse(loc.decode("latin-1"))
            except ValueError as e:
                raise Failed(400, f"X-Client-Location: {e}", NOT_APPLIED) from None
        return region, point

    async def _proxy(self, conn: ClientConn, req: Request, route: Route) -> int:
        region, point = self.origin(req)
        ctx = PickContext(req.client_ip, point, region)
        if route.kind == "unknown":
            raise Failed(404, f"no such endpoint: {req.method} {req.path}", NOT_APPLIED)
        if route.kind == "admin" and not self.cfg.expose_admin:
            raise Failed(
                403,
                "membership and leader transfer are not exposed through the gateway: "
                "send them to a node's client API",
                NOT_APPLIED,
            )
        if route.kind == "vm_create":
            hinted = req.header(b"x-novacron-region") is not None
            return await self._stream(conn, req, route, region, hinted, ctx, learn=True)
        if route.kind != "vm":
            return await self._stream(conn, req, route, region, True, ctx, learn=False)
        assert route.vm_id is not None
        home = self.gw.homes.get(route.vm_id) or await self._locate(route.vm_id, ctx)
        if home is None:
            raise Failed(404, f"no region holds VM {route.vm_id!r}", NOT_APPLIED)
        try:
            return await self._stream(conn, req, route, home, True, ctx, learn=True)
        except Failed as f:
            if route.write or conn.state == "responding" or f.outcome != NOT_APPLIED:
                raise
            if self.balancer.region_health().get(home, {}).get("available", 0) > 0:
                raise  # the home region is up: its answer stands
            # the home region has no node to answer: another region's replica may
            return await self._replica_read(conn, req, route, home, ctx, f)

    async def _locate(self, vm_id: str, ctx: PickContext) -> str | None:
        """Ask the regions, nearest first, for the VM's record; learn its home."""
        path = self.gw.fed.lookup_path(vm_id)
        unavailable = []
        for region in self.gw.regions_by_distance(ctx.region_hint):
            try:
                ans = await self._fetch(region, "GET", path, ctx)
            except Failed:
                unavailable.append(region)
                continue
            if ans.status == 200:
                home = self.learn_home(vm_id, ans.headers, ans.body, region)
                return home
        if unavailable:
            raise Failed(
                503,
                f"VM {vm_id!r} is not in the regions that answered; "
                f"unavailable: {', '.join(unavailable)}",
                NOT_APPLIED,
                1,
            )
        return None

    async def _replica_read(
        self, conn: ClientConn, req: Request, route: Route, home: str, ctx: PickContext, f: Failed
    ) -> int:
        for region in self.gw.regions_by_distance(home):
            if region == home:
                continue
            try:
                ans = await self._fetch(region, req.method, req.url.decode("latin-1"), ctx)
            except Failed:
                continue
            if ans.status == 200 and self.gw.fed.is_replica_answer(ans.headers):
                self._write_buffered(conn, req, ans)
                return ans.status
        raise Failed(
            503,
            f"VM {route.vm_id!r}: its home region {home} has no available node "
            f"({f.detail}) and no other region holds a replica of it",
            NOT_APPLIED,
            1,
        )

    def learn_home(
        self, vm_id: str, headers: list[tuple[bytes, bytes]], body: bytes, answered_by: str
    ) -> str:
        """Remember the VM's home from a record (or header). A node whose region setting
        names a region this gateway does not know (a misconfiguration) still answered
        from its own group: then the answering region is the home, and we say so once."""
        try:
            doc = json.loads(body) if body else None
        except ValueError:
            doc = None
        home = self.gw.fed.home_from_answer(headers, doc) or answered_by
        if home not in self.balancer.regions():
            if home not in self.warned_regions:
                self.warned_regions.add(home)
                self.gw.log.warning(
                    "a node of region %s says its VMs are homed in %r, a region this gateway "
                    "does not know: check the nodes' --region against the gateway's regions",
                    answered_by,
                    home,
                )
            home = answered_by
        if isinstance(doc, dict) and isinstance(doc.get("id"), str):
            vm_id = doc["id"]
        if vm_id:
            self.gw.homes.learn(vm_id, home)
        return home

    async def _stream(
        self,
        conn: ClientConn,
        req: Request,
        route: Route,
        region: str,
        strict: bool,
        ctx: PickContext,
        learn: bool,
        st: Attempts | None = None,
        prep: Prepared | None = None,
    ) -> int:
        prep = prep or self.prepare(req, route)
        st = st or Attempts(self.loop.time() + self.cfg.retry_window_s)
        choice, up = await self._attempt(req, route, region, strict, ctx, prep, st)
        status = up.status
        outcome = outcome_of(status)
        t0 = st.sent
        try:
            if learn and route.vm_id is not None and status == 404 and strict:
                self.gw.homes.forget(route.vm_id)
            if (
                learn
                and status in (200, 201)
                and up.length is not None
                and up.length <= LEARN_LIMIT
            ):
                # parse the record to learn the VM's home before passing it on
                chunks: list[bytes] = []
                up.set_sink(chunks.append)
                await up.done()
                data = b"".join(chunks)
                self.learn_home(route.vm_id or "", up.headers, data, choice.region)
                conn.state = "responding"
                conn.write(self.response_head(conn, req, up, choice, len(data)) + data)
            else:
                await self._relay(conn, req, up, choice)
        except (ExchangeLost, TimeoutError) as e:
            self.balancer.release(self.loop.time(), choice, Outcome.GATEWAY_FAILURE, 0)
            self.stats.upstream_outcome(choice.region, "lost")
            up.close()
            self.pool.put(up)
            conn.upstream = None
            raise Failed(502, f"{choice.backend.id} broke off its answer ({e})", UNKNOWN) from None
        except BaseException:
            self.balancer.release(self.loop.time(), choice, Outcome.NEUTRAL, 0)
            up.close()
            self.pool.put(up)
            conn.upstream = None
            raise
        conn.upstream = None
        self.balancer.release(self.loop.time(), choice, outcome, self.loop.time() - t0)
        self.stats.upstream_outcome(choice.region, outcome.value)
        if conn.closing:
            up.close()
        self.pool.put(up)
        return status
