"""aiohttp glue: a server middleware (request latency histogram, a server span per client
request continuing the caller's ``traceparent``) and client trace hooks (a client span per
outgoing request, its context injected into the request's headers).

Mount with ``app.middlewares.append(observe_middleware(metrics))`` before the app starts
(``observe.node.attach`` does it for the node), and create client sessions with
``trace_configs=client_trace_configs()``.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp import web
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from novacron_core.observe import tracing
from novacron_core.observe.metrics import status_class
from novacron_core.observe.slo import WRITE_LATENCY_THRESHOLD_S

if TYPE_CHECKING:
    from novacron_core.runtime.metrics import NodeMetrics

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
WRITE_METHODS = frozenset({"PUT", "POST", "DELETE", "PATCH"})
FORWARDED = "X-Novacron-Forwarded"


def classify(method: str, path: str) -> str:
    """read / write / admin: the bounded operation label of a request."""
    if not path.startswith("/v1/") or path.startswith(("/v1/cluster", "/v1/observe")):
        return "admin"
    return "write" if method in WRITE_METHODS else "read"


def route_of(request: web.Request) -> str:
    """The route template (``/v1/vms/{id}``), never the raw path: bounded span names."""
    info = request.match_info
    resource = info.route.resource if info is not None and info.route is not None else None
    return resource.canonical if resource is not None else "unmatched"


class Stats:
    """Per-interval request tallies the node's sampler reads (latency and error streams)."""

    def __init__(self) -> None:
        self.requests = 0
        self.errors = 0  # 5xx
        self.write_seconds = 0.0
        self.writes = 0
        # cumulative, for the SLOs' burn rates (observe.slo.LocalBurn)
        self.total = 0
        self.total_errors = 0
        self.writes_ok = 0
        self.writes_slow = 0

    def take(self) -> tuple[int, int, float, int]:
        out = (self.requests, self.errors, self.write_seconds, self.writes)
        self.requests = self.errors = self.writes = 0
        self.write_seconds = 0.0
        return out


def observe_middleware(metrics: NodeMetrics | None, stats: Stats | None = None) -> Any:
    """The middleware; tracing is on when observe.tracing.setup_tracing installed a provider."""
    traced = tracing.enabled()
    children: dict[tuple[str, int], Any] = {}  # (op, status) -> histogram child: one lookup

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        op = classify(request.method, request.path)
        t0 = time.perf_counter()
        status = 500
        try:
            # a new trace's sampling is decided here, before any SDK call: at 1 % the
            # other 99 % pay one header lookup and one random()
            if traced and ("traceparent" in request.headers or tracing.sample_root()):
                resp = await _traced(request, handler, op)
            else:
                resp = await handler(request)
            status = resp.status
            return resp
        except web.HTTPException as e:
            status = e.status
            raise
        finally:
            dt = time.perf_counter() - t0
            if metrics is not None:
                child = children.get((op, status))
                if child is None:
                    child = metrics.request_seconds.labels(op, status_class(status))
                    children[(op, status)] = child
                child.observe(dt)
            if stats is not None and op != "admin":
                stats.requests += 1
                stats.errors += status >= 500
                stats.total += 1
                stats.total_errors += status >= 500
                if op == "write":
                    stats.writes += 1
                    stats.write_seconds += dt
                    if 200 <= status < 300:
                        stats.writes_ok += 1
                        stats.writes_slow += dt > WRITE_LATENCY_THRESHOLD_S

    return middleware


async def _traced(request: web.Request, handler: Handler, op: str) -> web.StreamResponse:
    ctx = tracing.extract_headers(request.headers) if "traceparent" in request.headers else None
    route = route_of(request)
    span = tracing.tracer().start_span(
        f"{request.method} {route}", context=ctx, kind=SpanKind.SERVER
    )
    if not span.is_recording():
        # not sampled: no attributes, no context switch (most requests at 1 % sampling)
        return await handler(request)
    span.set_attributes(
        {
            "http.request.method": request.method,
            "http.route": route,
            "url.path": request.path,
            "novacron.op": op,
        }
    )
    if FORWARDED in request.headers:
        span.set_attribute("novacron.forwarded_by", request.headers[FORWARDED])
    with trace.use_span(span, end_on_exit=True):
        try:
            resp = await handler(request)
        except web.HTTPException as e:
            span.set_attribute("http.response.status_code", e.status)
            raise
        span.set_attribute("http.response.status_code", resp.status)
        if resp.status >= 500:
            span.set_status(Status(StatusCode.ERROR))
        return resp


def client_trace_configs() -> list[aiohttp.TraceConfig]:
    """Trace configs for an aiohttp ClientSession: empty unless tracing is on."""
    if not tracing.enabled():
        return []
    cfg = aiohttp.TraceConfig()

    async def on_start(
        session: aiohttp.ClientSession,
        ctx: SimpleNamespace,
        params: aiohttp.TraceRequestStartParams,
    ) -> None:
        if not trace.get_current_span().is_recording() and not tracing.sample_root():
            return  # a call outside any recorded span would start a new, unsampled trace
        span = tracing.tracer().start_span(
            f"{params.method} {params.url.path}",
            kind=SpanKind.CLIENT,
            attributes={"http.request.method": params.method, "url.full": str(params.url)},
        )
        ctx.span = span
        carrier: dict[str, str] = {}
        tracing.inject_headers(carrier, trace.set_span_in_context(span))
        for k, v in carrier.items():
            params.headers[k] = v

    async def on_end(
        session: aiohttp.ClientSession, ctx: SimpleNamespace, params: aiohttp.TraceRequestEndParams
    ) -> None:
        span = getattr(ctx, "span", None)
        if span is not None:
            span.set_attribute("http.response.status_code", params.response.status)
            span.end()

    async def on_error(
        session: aiohttp.ClientSession,
        ctx: SimpleNamespace,
        params: aiohttp.TraceRequestExceptionParams,
    ) -> None:
        span = getattr(ctx, "span", None)
        if span is not None:
            span.record_exception(params.exception)
            span.set_status(Status(StatusCode.ERROR))
            span.end()

    cfg.on_request_start.append(on_start)
    cfg.on_request_end.append(on_end)
    cfg.on_request_exception.append(on_error)
    return [cfg]
