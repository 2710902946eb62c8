"""The VM and conflict routes of the node's HTTP API.

Every VM write is prepared by the region's leader on top of what the region knows
(``PrepareVM``: the region machine's conflict engine, ``conflict/writes.py``) and committed
through the group with a compare-and-swap on the region's copy; a compare that fails (the
copy changed meanwhile) prepares again. Reads go through the group too (linearizable for
the region's own copy) and show the record merged with every region's copy the node's
replica holds.

Statuses, besides http_api's: 409 an illegal lifecycle transition (``current`` names the
state) or an address in use; 421 the VM is written only in its home region (``writes:
home``): ``home_region`` and ``home`` (its nodes' URLs, when the federation file lists
them) say where; nothing was applied. Routes:

``POST /v1/vms``, ``GET /v1/vms``, ``GET|PATCH|DELETE /v1/vms/{id}``, ``PUT
/v1/vms/{id}/spec``, ``POST /v1/vms/{id}/power|lifecycle|reboot|readdress``, ``PUT
/v1/vms/{id}/placement``; ``GET /v1/conflicts`` (``?vm=&since=&until=&status=&all=1&limit=``,
times in ms since the epoch or ISO 8601), ``GET /v1/conflicts/{id}``, ``POST
/v1/conflicts/{id}/resolve`` (``{"pick": dot}``, ``{"values": {path: value}}`` or
``{"accept": bool}``), ``POST /v1/conflicts/{id}/rollback``.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from novacron_core.conflict.engine import ConflictEngine
from novacron_core.conflict.record import LIFECYCLE, public
from novacron_core.conflict.writes import (
    Change,
    Create,
    Delete,
    Patch,
    Place,
    Power,
    Prepared,
    Readdress,
    Reboot,
    Refusal,
    Resolve,
    Rollback,
    SetSpec,
    Transition,
    Unchanged,
)
from novacron_core.consensus.interface import BUSY, NOT_LEADER, Reply
from novacron_core.consensus.kv import CAS, KVCommand, KVQuery
from novacron_core.region.machine import PrepareVM
from novacron_core.runtime.http_api import Unavailable, _err, _validated
from novacron_core.vm import (
    ConflictResolve,
    LifecycleChange,
    PlacementChange,
    PowerChange,
    ReaddressChange,
    VMCreate,
    VMPatch,
    VMSpec,
    vm_key,
)

if TYPE_CHECKING:
    from novacron_core.runtime.http_api import Api

ATTEMPTS = 8  # prepare + compare-and-swap rounds before a 409 "too many concurrent updates"


class VmApi:
    def __init__(
        self,
        api: Api,
        engine: Callable[[], ConflictEngine],
        home_urls: Callable[[str], list[str]] | None = None,
    ) -> None:
        self.api = api
        self.node = api.node
        self.engine = engine
        self.home_urls = home_urls or (lambda region: [])

    def routes(self, app: web.Application) -> None:
        r = app.router
        r.add_post("/v1/vms", self.create)
        r.add_get("/v1/vms", self.list)
        r.add_get("/v1/vms/{id}", self.get)
        r.add_patch("/v1/vms/{id}", self.patch)
        r.add_delete("/v1/vms/{id}", self.delete)
        r.add_put("/v1/vms/{id}/spec", self.spec)
        r.add_post("/v1/vms/{id}/power", self.power)
        r.add_post("/v1/vms/{id}/lifecycle", self.lifecycle)
        r.add_post("/v1/vms/{id}/reboot", self.reboot)
        r.add_post("/v1/vms/{id}/readdress", self.readdress)
        r.add_put("/v1/vms/{id}/placement", self.placement)
        r.add_get("/v1/conflicts", self.conflicts)
        r.add_get("/v1/conflicts/{id}", self.conflict)
        r.add_post("/v1/conflicts/{id}/resolve", self.resolve)
        r.add_post("/v1/conflicts/{id}/rollback", self.rollback)

    # ------------------------------------------------------------ writing

    async def write(
        self, request: web.Request, vm: str, change: Change, created: int = 200
    ) -> web.Response:

        h = request.headers
        who, source, role = (
            h.get("X-Novacron-User", ""),
            h.get("X-Novacron-Source", "api"),
            h.get("X-Novacron-Role", ""),
        )
        for _ in range(ATTEMPTS):
            out = await self.node.submit(PrepareVM(vm, change, who, source, role))
            if isinstance(out, Reply):
                if out.status == NOT_LEADER:
                    raise Unavailable(await self.api._proxy(request))
                if out.status == BUSY:
                    return _err(429, out.detail or "busy: not applied", retry=1)
                return _err(503, out.detail or f"{out.status}: not applied", retry=1)
            if isinstance(out, Refusal):
                return self._refused(out)
            if isinstance(out, Unchanged):
                return web.json_response(public(out.record))
            assert isinstance(out, Prepared)
            res = await self.api._write(request, KVCommand(CAS, out.key, out.value, out.expected))
            if res.ok:
                return web.json_response(public(out.record), status=created)
            # the region's copy changed since it was read: prepare on top of the new one
        return _err(409, "too many concurrent updates of this VM: not applied, retry", retry=1)

    def _refused(self, r: Refusal) -> web.Response:

        extra: dict[str, Any] = {"applied": False}
        if r.field:
            extra["field"] = r.field
        if r.current:
            extra["current"] = r.current
        if r.status == 421 and r.home:
            urls = self.home_urls(r.home)
            extra |= {"home_region": r.home, "home": urls}
            resp = _err(421, r.detail, **extra)
            if urls:
                resp.headers["X-Novacron-Home"] = urls[0]
            return resp
        return _err(r.status, r.detail, **extra)

    async def create(self, request: web.Request) -> web.Response:

        b = await _validated(request, VMCreate)
        change = Create(
            b.id,
            b.name,
            b.spec.model_dump(),
            b.power,
            dict(b.labels),
            tuple(b.tags),
            b.description,
        )
        return await self.write(request, b.id, change, created=201)

    async def spec(self, request: web.Request) -> web.Response:

        s = await _validated(request, VMSpec)
        return await self.write(request, request.match_info["id"], SetSpec(s.model_dump()))

    async def power(self, request: web.Request) -> web.Response:

        p = await _validated(request, PowerChange)
        return await self.write(request, request.match_info["id"], Power(p.state))

    async def lifecycle(self, request: web.Request) -> web.Response:

        c = await _validated(request, LifecycleChange)
        assert c.state in LIFECYCLE
        return await self.write(request, request.match_info["id"], Transition(c.state))

    async def reboot(self, request: web.Request) -> web.Response:
        return await self.write(request, request.match_info["id"], Reboot())

    async def placement(self, request: web.Request) -> web.Response:

        p = await _validated(request, PlacementChange)
        return await self.write(request, request.match_info["id"], Place(p.host, p.zone))

    async def readdress(self, request: web.Request) -> web.Response:

        body = await request.read()
        c = await _validated(request, ReaddressChange) if body.strip() else ReaddressChange()
        return await self.write(request, request.match_info["id"], Readdress(c.nic, c.ip))

    async def patch(self, request: web.Request) -> web.Response:

        p = await _validated(request, VMPatch)
        change = Patch(
            p.name, dict(p.labels), tuple(p.add_tags), tuple(p.remove_tags), p.description
        )
        return await self.write(request, request.match_info["id"], change)

    async def delete(self, request: web.Request) -> web.Response:
        vm = request.match_info["id"]
        resp = await self.write(request, vm, Delete())
        if resp.status == 200:
            return web.json_response({"deleted": vm})
        return resp

    # ------------------------------------------------------------ reading

    async def get(self, request: web.Request) -> web.Response:

        vm = request.match_info["id"]
        res = await self.api._read(request, KVQuery(vm_key(vm)))
        r = self.engine().base_for(vm, res.value)
        if r is None or r.deleted:
            return _err(404, f"no VM {vm!r}")
        if res.value is None:
            source = "federation-replica"  # this region never wrote it: its replica's record
        elif len(r.heads) == 1 and r.heads[0].region == self.region:
            source = "region"
        else:
            source = "merged"
        headers = {"X-Novacron-Source": source}
        return web.json_response(public(r.record), headers=headers)

    async def list(self, request: web.Request) -> web.Response:
        res = await self.api._read(request, KVQuery(prefix="vm/", limit=10_000))
        engine = self.engine()
        out = []
        for key, raw in res.items:
            r = engine.base_for(key[len("vm/") :], raw)
            if r is not None and not r.deleted:
                out.append(public(r.record))
        return web.json_response({"vms": out})

    @property
    def region(self) -> str:
        return self.node.settings.region

    # ------------------------------------------------------------ conflicts

    async def conflicts(self, request: web.Request) -> web.Response:

        q = request.query
        when: dict[str, int | None] = {}
        for name in ("since", "until"):
            try:
                when[name] = _when(q.get(name))
            except ValueError as e:
                return _err(422, f"{name}: {e}", field=name)
        since, until = when["since"], when["until"]
        status = q.get("status")
        if status is not None and status not in ("resolved", "siblings", "manual", "superseded"):
            return _err(
                422, "status: one of resolved, siblings, manual, superseded", field="status"
            )
        try:
            limit = int(q.get("limit", "1000"))
        except ValueError:
            return _err(422, "limit: an integer", field="limit")
        engine = self.engine()
        entries = engine.log.query(
            vm=q.get("vm"),
            since_ms=since,
            until_ms=until,
            status=status,
            include_superseded=q.get("all") in ("1", "true", "yes"),
            limit=max(1, min(limit, 10_000)),
        )
        return web.json_response(
            {
                "region": self.region,
                "node": self.node.id,
                "counts": engine.counts(),
                "conflicts": entries,
            }
        )

    async def conflict(self, request: web.Request) -> web.Response:

        ident = request.match_info["id"]
        engine = self.engine()
        e = engine.log.get(ident)
        if e is None:
            return _err(404, f"no conflict {ident!r} known to this node")
        return web.json_response({**e, "events": engine.log.history(e["key"])})

    def _vm_of(self, ident: str) -> str | None:
        e = self.engine().log.get(ident)
        return str(e["vm"]) if e is not None and isinstance(e.get("vm"), str) else None

    async def resolve(self, request: web.Request) -> web.Response:

        ident = request.match_info["id"]
        body = await _validated(request, ConflictResolve)
        given = [x for x in (body.pick, body.values or None, body.accept) if x is not None]
        if len(given) != 1:
            return _err(422, "give exactly one of pick, values or accept", field="pick")
        vm = self._vm_of(ident)
        if vm is None:
            return _err(404, f"no conflict {ident!r} known to this node")
        entry_id = str((self.engine().log.get(ident) or {}).get("id", ident))
        change = Resolve(entry_id, body.pick, dict(body.values), body.accept)
        return await self.write(request, vm, change)

    async def rollback(self, request: web.Request) -> web.Response:

        ident = request.match_info["id"]
        vm = self._vm_of(ident)
        if vm is None:
            return _err(404, f"no conflict {ident!r} known to this node")
        entry_id = str((self.engine().log.get(ident) or {}).get("id", ident))
        return await self.write(request, vm, Rollback(entry_id))


def _when(raw: str | None) -> int | None:
    """ms since the epoch, from an integer or an ISO 8601 time."""
    if raw is None or raw == "":
        return None
    try:
        return int(raw)
    except ValueError:
        pass
    try:
        t = datetime.datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{raw!r} is neither ms since the epoch nor an ISO 8601 time") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=datetime.UTC)
    return int(t.timestamp() * 1000)
