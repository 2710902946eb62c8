"""The node's HTTP API (aiohttp): KV, admin, metrics; VM records and conflicts are
``runtime/vm_api.py``'s routes.

Status codes: 200/201 done; 400 malformed body; 422 invalid field (named); 404 absent;
409 conflict (VM exists / compare failed / illegal lifecycle transition); 421 the VM is
written only in its home region (``home`` says where); 429 too many requests in flight
(Retry-After); 503 no leader / no quorum (Retry-After); 504 outcome unknown (retry with the same
``X-Client-Id``/``X-Request-Seq`` to get exactly-once). A non-leader proxies to the leader.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any, TypeVar

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ValidationError

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
from novacron_core.runtime.node_view import NodeView

M = TypeVar("M", bound=BaseModel)
FORWARDED = "X-Novacron-Forwarded"
NODE_KEY = web.AppKey("node", object)


class Unavailable(Exception):
    """Answer now with this response (raised from deep inside a handler)."""

    def __init__(self, response: web.Response) -> None:
        self.response = response


def _err(status: int, message: str, retry: float | None = None, **extra: Any) -> web.Response:
    headers = {"Retry-After": str(max(1, int(retry)))} if retry is not None else None
    return web.json_response({"error": message, **extra}, status=status, headers=headers)


def build_app(
    node: NodeView, more_routes: Callable[[web.Application], None] | None = None
) -> web.Application:
    app = web.Application(client_max_size=4 << 20, middlewares=[_middleware])
    app[NODE_KEY] = node
    api = Api(node)
    r = app.router
    r.add_get("/healthz", api.healthz)
    r.add_get("/readyz", api.readyz)
    r.add_get("/metrics", api.metrics)
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
    return app


@web.middleware
async def _middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    node: NodeView = request.app[NODE_KEY]  # type: ignore[assignment]
    driver = node.driver
    busy = driver is not None and driver.pending >= node.settings.max_inflight_requests
    if busy and request.path.startswith("/v1/"):
        resp: web.StreamResponse = _err(429, "too many requests in flight", retry=1)
        node.metrics.http.labels("429").inc()
        return resp
    try:
        resp = await handler(request)
    except Unavailable as u:
        resp = u.response
    node.metrics.http.labels(str(resp.status)).inc()
    return resp


class Api:
    def __init__(self, node: NodeView) -> None:
        self.node = node

    # ------------------------------------------------------------ consensus plumbing

    async def _call(self, request: web.Request, req: Any) -> Reply:
        """Run ``req`` on the group; on a follower, raise a proxied leader response."""
        reply: Reply = await self.node.submit(req)
        if reply.status == OK:
            return reply
        if reply.status == NOT_LEADER:
            raise Unavailable(await self._proxy(request))
        if reply.status == BUSY:
            raise Unavailable(_err(429, reply.detail or "busy", retry=1))
        if reply.status == UNKNOWN:
            raise Unavailable(
                _err(504, "outcome unknown: retry with the same X-Client-Id/X-Request-Seq")
            )
        raise Unavailable(_err(409, reply.detail or reply.status))

    async def _proxy(self, request: web.Request) -> web.Response:
        """Forward to the leader we know. Should we learn of another leader (or lose ours)
        before it answers, stop waiting: a hung or partitioned leader would otherwise hold
        the client for the whole request timeout. A read then goes to the new leader; a
        write may or may not have reached the old one, so its outcome is unknown (504)."""
        leader = self.node.leader
        if self.node.leader_http() is None or request.headers.get(FORWARDED):
            return _err(503, "no leader known", retry=1, leader=leader)
        changed = self.node.leader_change()
        upstream = asyncio.ensure_future(self._forward(request))
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
        return _err(
            504,
            f"leader {leader} stopped answering; outcome unknown: retry with the same "
            "X-Client-Id/X-Request-Seq",
        )

    async def _forward(self, request: web.Request) -> web.Response:
        target = self.node.leader_http()
        if target is None:
            return _err(503, "no leader known", retry=1)
        assert self.node.http is not None
        url = f"http://{target[0]}:{target[1]}{request.rel_url}"
        headers = {k: v for k, v in request.headers.items() if k.lower().startswith("x-")}
        headers[FORWARDED] = self.node.id
        if request.content_type:
            headers["Content-Type"] = request.content_type
        try:
            body = await request.read()
            async with self.node.http.request(
                request.method, url, data=body, headers=headers
            ) as resp:
                data = await resp.read()
                out_headers = {
                    k: v
                    for k, v in resp.headers.items()
                    if k in ("Content-Type", "Retry-After") or k.lower().startswith("x-novacron-")
                }
                return web.Response(status=resp.status, body=data, headers=out_headers)
        except Exception:
            return _err(503, "leader unreachable", retry=1)

    def _session(self, request: web.Request) -> tuple[str, int]:
        client = request.headers.get("X-Client-Id", "")
        try:
            seq = int(request.headers.get("X-Request-Seq", "0"))
        except ValueError:
            raise Unavailable(_err(400, "X-Request-Seq must be an integer")) from None
        return (client, seq) if client else ("", 0)

    async def _write(self, request: web.Request, cmd: KVCommand) -> KVResult:
        reply = await self._call(request, Propose(encode(cmd)))
        return decode(reply.value, KVResult) if reply.value else KVResult()

    async def _read(self, request: web.Request, q: KVQuery) -> KVResult:
        reply = await self._call(request, Read(encode(q)))
        return decode(reply.value, KVResult) if reply.value else KVResult(False)

    # ------------------------------------------------------------ KV

    async def kv_put(self, request: web.Request) -> web.Response:
        client, seq = self._session(request)
        value = await request.read()
        await self._write(
            request, KVCommand(PUT, request.match_info["key"], value, None, client, seq)
        )
        return web.json_response({"ok": True})

    async def kv_get(self, request: web.Request) -> web.Response:
        res = await self._read(request, KVQuery(request.match_info["key"]))
        if res.value is None:
            return _err(404, "no such key")
        return web.Response(body=res.value, content_type="application/octet-stream")

    async def kv_delete(self, request: web.Request) -> web.Response:
        client, seq = self._session(request)
        res = await self._write(
            request, KVCommand(DELETE, request.match_info["key"], None, None, client, seq)
        )
        return web.json_response({"ok": True, "existed": res.value is not None})

    async def kv_cas(self, request: web.Request) -> web.Response:
        """Body: {"expected": str | null, "value": str | null} (null = absent / delete)."""
        client, seq = self._session(request)
        body = await _json(request)
        for field in ("expected", "value"):
            if field not in body or not (body[field] is None or isinstance(body[field], str)):
                return _err(422, f"{field}: a string or null is required", field=field)
        exp = None if body["expected"] is None else body["expected"].encode()
        new = None if body["value"] is None else body["value"].encode()
        res = await self._write(
            request, KVCommand(CAS, request.match_info["key"], new, exp, client, seq)
        )
        current = res.value.decode(errors="replace") if res.value is not None else None
        return web.json_response({"swapped": res.ok, "current": current})

    # ------------------------------------------------------------ admin

    async def healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    async def readyz(self, request: web.Request) -> web.Response:
        st = self.node.status()
        member = st.member
        # Caught up: a leader is known and we are within one snapshot interval of its
        # commit index (the operator waits for this before moving on in a rolling change).
        limit = min(1000, self.node.settings.snapshot_entries)
        caught_up = st.leader is not None and st.lag <= limit
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
        body = await _json(request)
        action, node = body.get("action"), body.get("node")
        if action not in ("add_learner", "promote", "add_voter", "remove"):
            return _err(
                422, "action: one of add_learner, promote, add_voter, remove", field="action"
            )
        if not isinstance(node, str) or not node:
            return _err(422, "node: a node id is required", field="node")
        peer = http = ""
        if action in ("add_learner", "add_voter"):
            known = self.node.peers.get(node) or self.node.static_peers.get(node)
            given: dict[str, str] = {}
            for field in ("peer", "http"):
                value = body.get(field)
                if value is None:
                    if known is None:
                        return _err(
                            422,
                            f"{field}: the node's {field} address (host:port) is required: "
                            f"{node} is not a known member",
                            field=field,
                        )
                    addr = known[0] if field == "peer" else known[1]
                    value = f"{addr[0]}:{addr[1]}"
                if not isinstance(value, str) or not _is_host_port(value):
                    return _err(422, f"{field}: host:port expected", field=field)
                given[field] = value
            peer, http = given["peer"], given["http"]
        await self._call(request, ChangeMember(action, node, peer, http))
        return web.json_response(self._status())

    async def transfer(self, request: web.Request) -> web.Response:
        body = await _json(request)
        target = body.get("target")
        if not isinstance(target, str):
            return _err(422, "target: a node id is required", field="target")
        reply = await self._call(request, TransferLeader(target))
        return web.json_response({"ok": True, "detail": reply.detail})

    async def metrics(self, request: web.Request) -> web.Response:
        self.node.refresh_metrics()
        body = generate_latest(self.node.metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def _is_host_port(value: str) -> bool:
    host, sep, port = value.rpartition(":")
    return bool(sep and host and port.isdigit() and 0 < int(port) < 65536)


async def _json(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise Unavailable(_err(400, "body is not valid JSON")) from None
    if not isinstance(body, dict):
        raise Unavailable(_err(400, "body must be a JSON object"))
    return body


async def _validated(request: web.Request, model: type[M]) -> M:
    raw = await request.read()
    try:
        return model.model_validate_json(raw)
    except ValidationError as e:
        errors = e.errors()
        if any(err["type"] == "json_invalid" for err in errors):
            raise Unavailable(_err(400, "body is not valid JSON")) from None
        fields = [
            {"field": ".".join(str(x) for x in err["loc"]), "message": err["msg"]} for err in errors
        ]
        first = fields[0]["field"] if fields else ""
        raise Unavailable(_err(422, f"invalid field {first}", errors=fields)) from None
