"""The node's HTTP API (aiohttp): KV, admin, metrics, its OpenAPI document; VM records
and conflicts are ``runtime/vm_api.py``'s routes.

Status codes: 200/201 done; 400 malformed body or header; 403 a raw KV write into the VM
key space; 404 absent; 409 conflict (VM exists, corrupt record, illegal lifecycle
transition); 412 If-Match failed; 413 too large; 421 the VM is written only in its home
region (``X-Novacron-Home`` and ``home`` say where); 422 invalid field (named); 429 too
many requests in flight; 503 no leader can take it now. All of those mean *not applied*.
504 means *outcome unknown*: retry with the same ``X-Client-Id``/``X-Request-Seq`` to get
exactly-once (KV), or read to find out.
Every error is an RFC 9457 problem saying which (``runtime/problems.py``, docs/api.md).
A non-leader forwards to the leader (``runtime/forward.py``).
Every ``/v1/`` response says what a success promises in ``X-Novacron-Consistency``:
``linearizable`` (Raft, Multi-Paxos) or ``eventual`` (the eventual protocol).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from aiohttp import web
from opentelemetry import trace
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from novacron_core.codec import decode, encode
from novacron_core.consensus.interface import (
    BUSY,
    NOT_LEADER,
    OK,
    UNKNOWN,
    ChangeMember,
    Propose,
    Read,
    Reply,
    TransferLeader,
)
from novacron_core.consensus.kv import CAS, DELETE, PUT, KVCommand, KVQuery, KVResult
from novacron_core.observe import tracing
from novacron_core.region.machine import Traced
from novacron_core.runtime.api_models import CasRequest, MemberChange, TransferRequest
from novacron_core.runtime.forward import Attempt
from novacron_core.runtime.keyed_lock import KeyedLock
from novacron_core.runtime.node_view import NodeView
from novacron_core.runtime.problems import Problem, from_http_exception, problem_middleware
from novacron_core.runtime.validation import validated

FORWARDED = "X-Novacron-Forwarded"
CONSISTENCY = "X-Novacron-Consistency"
NODE_KEY = web.AppKey("node", object)
MAX_BODY = 4 << 20
MAX_KEY_CHARS = 1024
MAX_CLIENT_ID = 128
SEQ_LIMIT = 1 << 64  # sessions store the seq as a msgpack unsigned 64-bit integer
VM_PREFIX = "vm/"  # the VM API's key space: raw KV writes there are refused
# Concurrent updates of one VM queue on the leader instead of racing each other's
# compare-and-swap; beyond this many waiting, the next one is refused (429).
MAX_VM_WAITERS = 256
# Response headers a follower passes back from the leader.
PASSED_HEADERS = ("Content-Type", "Retry-After", "ETag", "Allow")


class Unavailable(Exception):
    """Answer now with this response (raised from deep inside a handler: the leader's own
    answer to a forwarded request)."""

    def __init__(self, response: web.Response) -> None:
        self.response = response


def build_app(
    node: NodeView, more_routes: Callable[[web.Application], None] | None = None
) -> web.Application:
    app = web.Application(
        client_max_size=MAX_BODY,
        middlewares=[problem_middleware, _admission],
        # aiohttp answers a request line or header over its limits (8 KiB) itself, in plain
        # text, before any middleware: with 64 KiB every URL a key fits in reaches a handler
        # and gets a problem.
        handler_args={"max_line_size": 1 << 16, "max_field_size": 1 << 16},
    )
    app[NODE_KEY] = node
    api = Api(node)
    r = app.router
    r.add_get("/healthz", api.healthz)
    r.add_get("/readyz", api.readyz)
    r.add_get("/metrics", api.metrics)
    r.add_get("/openapi.json", api.openapi)
    r.add_get("/v1/cluster", api.cluster)
    r.add_post("/v1/cluster/members", api.members)
    r.add_post("/v1/cluster/transfer", api.transfer)
    r.add_put("/v1/kv/{key:.+}", api.kv_put)
    r.add_get("/v1/kv/{key:.+}", api.kv_get)
    r.add_delete("/v1/kv/{key:.+}", api.kv_delete)
    r.add_post("/v1/cas/{key:.+}", api.kv_cas)
    from novacron_core.runtime.vm_api import VmApi  # (it builds on this module)

    VmApi(api, node.conflict_engine, node.home_urls).routes(app)
    if more_routes is not None:
        more_routes(app)  # the federation's (runtime/federation.py)
    # observability (observe/node.py): request metrics and spans, health, forecasts, /debug
    from novacron_core.observe.node import attach

    attach(app, node)
    return app


@web.middleware
async def _admission(request: web.Request, handler: Any) -> web.StreamResponse:
    node: NodeView = request.app[NODE_KEY]  # type: ignore[assignment]
    driver = node.driver
    busy = driver is not None and driver.pending >= node.settings.max_inflight_requests
    try:
        if busy and request.path.startswith("/v1/"):
            raise Problem("busy", "too many requests in flight: not applied", retry_after=1)
        resp = await handler(request)
    except Unavailable as u:
        resp = u.response
    except Problem as p:
        resp = p.response()
    except web.HTTPException as e:
        if e.status < 400:
            raise
        resp = from_http_exception(e, request)
    if request.path.startswith("/v1/"):
        # what a success promises: "eventual" means applied where it was answered and
        # replicated afterwards (reads may be stale, concurrent writes: last writer wins)
        resp.headers[CONSISTENCY] = node.consistency
    node.metrics.http.labels(str(resp.status)).inc()
    return resp  # type: ignore[no-any-return]


class Api:
    def __init__(self, node: NodeView) -> None:
        self.node = node
        self._vm_queue = KeyedLock(MAX_VM_WAITERS)
        self._openapi: dict[str, Any] | None = None
        self._traced = tracing.enabled()

    # ------------------------------------------------------------ consensus plumbing

    async def _submit(self, req: Any, key: str) -> Reply:
        if not (self._traced and isinstance(req, Propose)):
            return await self.node.submit(req)  # type: ignore[no-any-return]
        if not trace.get_current_span().is_recording():
            return await self.node.submit(req)  # type: ignore[no-any-return]
        # the consensus round as a span; its context rides with the proposal, so a VM
        # record's publication to the other regions continues this trace
        attrs = {"novacron.key": key}
        with tracing.tracer().start_as_current_span("consensus.propose", attributes=attrs) as sp:
            reply: Reply = await self.node.submit(Traced(req, tracing.to_carrier()))
            sp.set_attribute("novacron.status", reply.status)
        return reply

    async def _call(self, request: web.Request, req: Any, key: str = "") -> Reply:
        """Run ``req`` on the group; on a follower, raise the leader's answer to it."""
        reply: Reply = await self._submit(req, key)
        if reply.status == OK:
            return reply
        if reply.status == NOT_LEADER:
            if self.node.status().leaderless:  # no leader to forward to: say why, not applied
                detail = reply.detail or "this replica cannot commit now"
                raise Problem("unavailable", f"{detail}: not applied", retry_after=1)
            raise Unavailable(await self._proxy(request))
        if reply.status == BUSY:
            raise Problem("busy", f"{reply.detail or 'busy'}: not applied", retry_after=1)
        if reply.status == UNKNOWN:
            if isinstance(req, Read):  # a read changes nothing: simply not answered
                raise Problem("unavailable", f"read not answered: {reply.detail}", retry_after=1)
            raise Problem(
                "outcome-unknown",
                f"{reply.detail or 'the leader lost its term'}: the write may or may not "
                "have been applied; retry with the same X-Client-Id/X-Request-Seq, or read",
            )
        raise Problem("conflict", reply.detail or reply.status)

    async def _proxy(self, request: web.Request) -> web.Response:
        """Forward to the leader we know. Should we learn of another leader (or lose ours)
        before it answers, stop waiting: a hung or partitioned leader would otherwise hold
        the client for the whole request timeout. A read then goes to the new leader; a
        write that may have reached the old one has an unknown outcome (504)."""
        leader = self.node.leader
        if request.headers.get(FORWARDED):
            raise Problem(
                "unavailable",
                f"{self.node.id} is not the leader any more (forwarded by "
                f"{request.headers[FORWARDED]}): not applied",
                retry_after=1,
                leader=leader,
            )
        if self.node.leader_http() is None:
            raise Problem(
                "unavailable",
                "no leader known (an election may be running): not applied",
                retry_after=1,
                leader=leader,
            )
        changed = self.node.leader_change()
        attempt = Attempt()
        upstream = asyncio.ensure_future(self._forward(request, attempt))
        try:
            pending: set[asyncio.Future[Any]] = {upstream, changed}
            await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self.node.forget_leader_change(changed)
        if upstream.done():
            return upstream.result()
        upstream.cancel()
        if request.method in ("GET", "HEAD"):
            return await self._proxy(request)
        if not attempt.connected:
            raise Problem(
                "unavailable",
                f"the leader changed from {leader} before the request was sent: not applied",
                retry_after=1,
            )
        raise Problem(
            "outcome-unknown",
            f"leader {leader} was replaced while it held the request: the write may or may "
            "not have been applied; retry with the same X-Client-Id/X-Request-Seq, or read",
        )

    async def _forward(self, request: web.Request, attempt: Attempt) -> web.Response:
        target = self.node.leader_http()
        if target is None:
            raise Problem("unavailable", "no leader known: not applied", retry_after=1)
        assert self.node.http is not None
        url = f"http://{target[0]}:{target[1]}{request.rel_url}"
        headers = {k: v for k, v in request.headers.items() if k.lower().startswith("x-")}
        headers[FORWARDED] = self.node.id
        for name in ("Content-Type", "If-Match"):
            if name in request.headers:
                headers[name] = request.headers[name]
        body = await request.read()
        leader = self.node.leader
        try:
            async with self.node.http.request(
                request.method, url, data=body, headers=headers, trace_request_ctx=attempt
            ) as resp:
                data = await resp.read()
                out_headers = {
                    k: v
                    for k, v in resp.headers.items()
                    if k in PASSED_HEADERS or k.lower().startswith("x-novacron-")
                }
                return web.Response(status=resp.status, body=data, headers=out_headers)
        except asyncio.CancelledError:
            raise
        except Exception as e:
            why = f"{type(e).__name__}: {e}".rstrip(": ")
            if not attempt.connected:
                raise Problem(
                    "unavailable",
                    f"leader {leader} unreachable ({why}): the request was not sent, not applied",
                    retry_after=1,
                ) from None
            if request.method in ("GET", "HEAD"):
                raise Problem(
                    "unavailable", f"leader {leader} did not answer ({why})", retry_after=1
                ) from None
            raise Problem(
                "outcome-unknown",
                f"the connection to leader {leader} broke after the request was sent ({why}): "
                "the write may or may not have been applied; retry with the same "
                "X-Client-Id/X-Request-Seq, or read",
            ) from None

    def _session(self, request: web.Request) -> tuple[str, int]:
        client = request.headers.get("X-Client-Id", "")
        raw = request.headers.get("X-Request-Seq")
        seq = 0
        if raw is not None:
            try:
                seq = int(raw.strip())
            except ValueError:
                seq = -1
            if not 0 <= seq < SEQ_LIMIT:
                raise Problem(
                    "invalid-header",
                    f"X-Request-Seq: an integer from 0 to {SEQ_LIMIT - 1} is required, "
                    f"not {raw[:40]!r}",
                    header="X-Request-Seq",
                )
        if len(client) > MAX_CLIENT_ID:
            raise Problem(
                "invalid-header",
                f"X-Client-Id: at most {MAX_CLIENT_ID} characters",
                header="X-Client-Id",
            )
        return (client, seq) if client else ("", 0)

    async def _write(self, request: web.Request, cmd: KVCommand) -> KVResult:
        reply = await self._call(request, Propose(encode(cmd)), cmd.key)
        return decode(reply.value, KVResult) if reply.value else KVResult()

    async def _read(self, request: web.Request, q: KVQuery) -> KVResult:
        reply = await self._call(request, Read(encode(q)))
        return decode(reply.value, KVResult) if reply.value else KVResult(False)

    # ------------------------------------------------------------ KV

    def _key(self, request: web.Request, write: bool) -> str:
        key = request.match_info["key"]
        if len(key) > MAX_KEY_CHARS:
            raise Problem("invalid-field", f"key: at most {MAX_KEY_CHARS} characters", field="key")
        if write and key.startswith(VM_PREFIX):
            raise Problem(
                "reserved-key",
                f"keys under {VM_PREFIX} belong to the VM API: write VM records through "
                "/v1/vms (a raw value there would not be a VM record): not applied",
                key=key,
            )
        return key

    async def kv_put(self, request: web.Request) -> web.Response:
        key = self._key(request, write=True)
        client, seq = self._session(request)
        value = await request.read()
        await self._write(request, KVCommand(PUT, key, value, None, client, seq))
        return web.json_response({"ok": True})

    async def kv_get(self, request: web.Request) -> web.Response:
        res = await self._read(request, KVQuery(self._key(request, write=False)))
        if res.value is None:
            raise Problem("not-found", "no such key")
        return web.Response(body=res.value, content_type="application/octet-stream")

    async def kv_delete(self, request: web.Request) -> web.Response:
        key = self._key(request, write=True)
        client, seq = self._session(request)
        res = await self._write(request, KVCommand(DELETE, key, None, None, client, seq))
        return web.json_response({"ok": True, "existed": res.value is not None})

    async def kv_cas(self, request: web.Request) -> web.Response:
        """Body: {"expected": str | null, "value": str | null} (null = absent / delete)."""
        key = self._key(request, write=True)
        client, seq = self._session(request)
        body = await validated(request, CasRequest)
        exp = None if body.expected is None else body.expected.encode()
        new = None if body.value is None else body.value.encode()
        res = await self._write(request, KVCommand(CAS, key, new, exp, client, seq))
        current = res.value.decode(errors="replace") if res.value is not None else None
        return web.json_response({"swapped": res.ok, "current": current})

    # ------------------------------------------------------------ admin

    async def healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    async def readyz(self, request: web.Request) -> web.Response:
        st = self.node.status()
        member = st.member
        # Caught up: a leader is known (leaderless: a quorum is heard) and we are within one
        # snapshot interval of its commit index (the operator waits for this before moving
        # on in a rolling change).
        limit = min(1000, self.node.settings.snapshot_entries)
        caught_up = st.can_commit and st.lag <= limit
        # Rejoining (lost its state, waiting to be replaced): not ready until re-added.
        rejoining = self.node.rejoining
        if member and caught_up and not rejoining:
            return web.json_response({"ready": True, "leader": st.leader})
        body = {"ready": False, "leader": st.leader, "member": member, "rejoining": rejoining}
        return web.json_response(body, status=503)

    def _status(self) -> dict[str, Any]:
        return self.node.status().model_dump(mode="json")

    async def cluster(self, request: web.Request) -> web.Response:
        return web.json_response(self._status())

    async def members(self, request: web.Request) -> web.Response:
        """Body ``{"action", "node", "peer"?, "http"?}``. add_learner/add_voter record the
        node's addresses (``host:port``) in the replicated configuration; they may be left
        out only when this node already knows them. promote/remove ignore them."""
        body = await validated(request, MemberChange)
        action, node = body.action, body.node
        peer = http = ""
        if action in ("add_learner", "add_voter"):
            known = self.node.peers.get(node) or self.node.static_peers.get(node)
            given: dict[str, str] = {}
            for field in ("peer", "http"):
                value: str | None = getattr(body, field)
                if value is None:
                    if known is None:
                        raise Problem(
                            "invalid-field",
                            f"{field}: the node's {field} address (host:port) is required: "
                            f"{node} is not a known member",
                            field=field,
                        )
                    addr = known[0] if field == "peer" else known[1]
                    value = f"{addr[0]}:{addr[1]}"
                given[field] = value
            peer, http = given["peer"], given["http"]
        await self._call(request, ChangeMember(action, node, peer, http))
        return web.json_response(self._status())

    async def transfer(self, request: web.Request) -> web.Response:
        body = await validated(request, TransferRequest)
        reply = await self._call(request, TransferLeader(body.target))
        return web.json_response({"ok": True, "detail": reply.detail})

    async def metrics(self, request: web.Request) -> web.Response:
        self.node.refresh_metrics()
        body = generate_latest(self.node.metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def openapi(self, request: web.Request) -> web.Response:
        if self._openapi is None:
            from novacron_core.runtime.openapi import node_document

            self._openapi = node_document()
        return web.json_response(self._openapi)
