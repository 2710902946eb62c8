"""The VM and conflict routes of the node's HTTP API.

Every VM write is prepared by the region's leader on top of what the region knows
(``PrepareVM``: the region machine's conflict engine, ``conflict/writes.py``) and committed
through the group with a compare-and-swap on the region's copy; a compare that fails (the
copy changed meanwhile) prepares again. Reads go through the group too (linearizable for
the region's own copy) and show the record merged with every region's copy the node's
replica holds.

Errors are RFC 9457 problems (``runtime/problems.py``), besides http_api's: 409 an illegal
lifecycle transition (``current`` names the state), an address in use, or a corrupt stored
value; 412 If-Match names another version (every write honours it: the ETag is the
record's ``version``); 421 ``wrong-region``: the VM is written only in its home region
(``writes: home``): ``home_region``, ``home`` (its nodes' URLs, when the federation file
lists them) and the ``X-Novacron-Home`` header say where. All of them: not applied.
Writes of one VM queue on the leader (``KeyedLock``). Routes:

``POST /v1/vms``, ``GET /v1/vms``, ``GET|PATCH|DELETE /v1/vms/{id}``, ``PUT
/v1/vms/{id}/spec``, ``POST /v1/vms/{id}/power|lifecycle|reboot|readdress``, ``PUT
/v1/vms/{id}/placement``; ``GET /v1/conflicts`` (``?vm=&since=&until=&status=&all=1&limit=``,
times in ms since the epoch or ISO 8601), ``GET /v1/conflicts/{id}``, ``POST
/v1/conflicts/{id}/resolve`` (``{"pick": dot}``, ``{"values": {path: value}}`` or
``{"accept": bool}``), ``POST /v1/conflicts/{id}/rollback``.
"""

from __future__ import annotations

import asyncio
import datetime
import random
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from novacron_core.conflict.engine import ConflictEngine
from novacron_core.conflict.record import public
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
from novacron_core.runtime.etags import check_version, if_match, vm_response
from novacron_core.runtime.http_api import VM_PREFIX, Unavailable
from novacron_core.runtime.keyed_lock import QueueFull
from novacron_core.runtime.problems import Problem
from novacron_core.runtime.validation import validated
from novacron_core.vm import (
    ConflictResolve,
    CorruptRecordError,
    LifecycleChange,
    PlacementChange,
    PowerChange,
    ReaddressChange,
    VMCreate,
    VMPatch,
    VMSpec,
    check_record,
    vm_key,
)

if TYPE_CHECKING:
    from novacron_core.runtime.http_api import Api

MAX_LIMIT = 10_000  # conflicts one GET /v1/conflicts lists at most
HOME = "X-Novacron-Home"  # a 421's header: a node of the VM's home region to ask instead


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
        self,
        request: web.Request,
        vm: str,
        change: Change,
        created: int = 200,
        conditional: bool = True,
    ) -> web.Response:
        """Prepare on the leader, compare-and-swap the region's copy. Writes of one VM queue
        here (on the leader: a follower forwards the whole request) so they do not spend
        their attempts racing each other; a CAS still lost (to a write under another
        leader, say) is prepared again until the request deadline. With If-Match the
        version must match the record the write builds on, else 412 and nothing is
        written."""
        wanted = if_match(request) if conditional else None  # (a create builds on nothing)
        try:
            async with self.api._vm_queue.hold(vm):
                return await self._write_locked(request, vm, change, created, wanted)
        except QueueFull:
            raise Problem(
                "busy", f"too many updates of VM {vm!r} waiting: not applied", retry_after=1
            ) from None

    async def _write_locked(
        self,
        request: web.Request,
        vm: str,
        change: Change,
        created: int,
        wanted: set[int] | None,
    ) -> web.Response:
        h = request.headers
        who, source, role = (
            h.get("X-Novacron-User", ""),
            h.get("X-Novacron-Source", "api"),
            h.get("X-Novacron-Role", ""),
        )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.node.settings.request_timeout_s
        attempt = 0
        while True:
            checked: bytes | None = None
            if wanted is not None:
                checked = await self._check_version(request, vm, wanted)
            out = await self.node.submit(PrepareVM(vm, change, who, source, role))
            if isinstance(out, Reply):
                await self._not_prepared(request, out)
            elif isinstance(out, Refusal):
                raise await self._refused(request, vm, out)
            elif isinstance(out, Unchanged):
                return vm_response(public(out.record))
            else:
                assert isinstance(out, Prepared)
                if out.expected is not None and not _is_record(vm, out.expected):
                    raise _corrupt(vm, out.expected)
                if wanted is None or out.expected == checked:
                    cmd = KVCommand(CAS, out.key, out.value, out.expected)
                    res = await self.api._write(request, cmd)
                    if res.ok:
                        return vm_response(public(out.record), status=created)
                # else the region's copy changed since it was read: prepare on the new one
            attempt += 1
            if loop.time() >= deadline:
                raise Problem(
                    "conflict",
                    f"VM {vm!r} kept changing under {attempt} attempts: not applied, retry",
                    retry_after=1,
                )
            await asyncio.sleep(random.uniform(0, min(0.1, 0.002 * 2**attempt)))

    async def _check_version(self, request: web.Request, vm: str, wanted: set[int]) -> bytes | None:
        """412 unless the record a write would build on is at a version If-Match accepts;
        the region's copy it was checked on (the write goes ahead only on that copy)."""
        res = await self.api._read(request, KVQuery(vm_key(vm)))
        if res.value is not None and not _is_record(vm, res.value):
            raise _corrupt(vm, res.value)
        r = self.engine().base_for(vm, res.value)
        if r is None or r.deleted:
            raise Problem("not-found", f"no VM {vm!r}")
        check_version(wanted, public(r.record))
        return res.value

    async def _not_prepared(self, request: web.Request, out: Reply) -> None:
        """A prepare the group did not answer: nothing was proposed, so never applied."""
        if out.status == NOT_LEADER:
            if self.node.status().leaderless:
                detail = out.detail or "this replica cannot commit now"
                raise Problem("unavailable", f"{detail}: not applied", retry_after=1)
            raise Unavailable(await self.api._proxy(request))
        if out.status == BUSY:
            raise Problem("busy", f"{out.detail or 'busy'}: not applied", retry_after=1)
        raise Problem("unavailable", f"{out.detail or out.status}: not applied", retry_after=1)

    async def _refused(self, request: web.Request, vm: str, r: Refusal) -> Problem:
        extra: dict[str, Any] = {}
        if r.field:
            extra["field"] = r.field
        if r.current:
            extra["current"] = r.current
        if r.status == 421:
            home = r.home or ""
            urls = self.home_urls(home) if home else []
            headers = {HOME: urls[0]} if urls else {}
            return Problem(
                "wrong-region", r.detail, headers=headers, home_region=home, home=urls, **extra
            )
        if r.status == 404:
            # a value under the key that is not a record reads as no VM to the engine
            res = await self.api._read(request, KVQuery(vm_key(vm)))
            if res.value is not None and not _is_record(vm, res.value):
                return _corrupt(vm, res.value)
            return Problem("not-found", f"{r.detail}: not applied", **extra)
        if r.status == 422:
            return Problem("invalid-field", r.detail, **extra)
        if r.home:
            extra["home_region"] = r.home  # who holds the id (a refused create)
        return Problem("conflict", f"{r.detail}: not applied", **extra)

    async def create(self, request: web.Request) -> web.Response:

        b = await validated(request, VMCreate)
        change = Create(
            b.id,
            b.name,
            b.spec.model_dump(),
            b.power,
            dict(b.labels),
            tuple(b.tags),
            b.description,
        )
        return await self.write(request, b.id, change, created=201, conditional=False)

    async def spec(self, request: web.Request) -> web.Response:

        s = await validated(request, VMSpec)
        return await self.write(request, request.match_info["id"], SetSpec(s.model_dump()))

    async def power(self, request: web.Request) -> web.Response:

        p = await validated(request, PowerChange)
        return await self.write(request, request.match_info["id"], Power(p.state))

    async def lifecycle(self, request: web.Request) -> web.Response:

        c = await validated(request, LifecycleChange)
        return await self.write(request, request.match_info["id"], Transition(c.state))

    async def reboot(self, request: web.Request) -> web.Response:
        return await self.write(request, request.match_info["id"], Reboot())

    async def placement(self, request: web.Request) -> web.Response:

        p = await validated(request, PlacementChange)
        return await self.write(request, request.match_info["id"], Place(p.host, p.zone))

    async def readdress(self, request: web.Request) -> web.Response:

        body = await request.read()
        c = await validated(request, ReaddressChange) if body.strip() else ReaddressChange()
        return await self.write(
            request, request.match_info["id"], Readdress(c.nic, None if c.ip is None else str(c.ip))
        )

    async def patch(self, request: web.Request) -> web.Response:

        p = await validated(request, VMPatch)
        change = Patch(
            p.name, dict(p.labels), tuple(p.add_tags), tuple(p.remove_tags), p.description
        )
        return await self.write(request, request.match_info["id"], change)

    async def delete(self, request: web.Request) -> web.Response:
        vm = request.match_info["id"]
        if request.headers.get("If-Match") is None:
            # unconditional: a value there that is not a record is removed as it is
            res = await self.api._read(request, KVQuery(vm_key(vm)))
            if res.value is not None and not _is_record(vm, res.value):
                cas = KVCommand(CAS, vm_key(vm), None, res.value)
                if (await self.api._write(request, cas)).ok:
                    return web.json_response({"deleted": vm})
        await self.write(request, vm, Delete())
        return web.json_response({"deleted": vm})

    # ------------------------------------------------------------ reading

    async def get(self, request: web.Request) -> web.Response:
        vm = request.match_info["id"]
        res = await self.api._read(request, KVQuery(vm_key(vm)))
        if res.value is not None and not _is_record(vm, res.value):
            raise _corrupt(vm, res.value)
        r = self.engine().base_for(vm, res.value)
        if r is None and self.node.replicated_vm is not None:
            await self.node.replicated_vm(vm)  # 409 if the replica holds a corrupt copy
        if r is None or r.deleted:
            raise Problem("not-found", f"no VM {vm!r}")
        if res.value is None:
            source = "federation-replica"  # this region never wrote it: its replica's record
        elif len(r.heads) == 1 and r.heads[0].region == self.region:
            source = "region"
        else:
            source = "merged"
        return vm_response(public(r.record), headers={"X-Novacron-Source": source})

    async def list(self, request: web.Request) -> web.Response:
        res = await self.api._read(request, KVQuery(prefix=VM_PREFIX, limit=10_000))
        engine = self.engine()
        out: list[dict[str, Any]] = []
        corrupt: list[dict[str, str]] = []
        for key, raw in res.items:
            vm = key[len(VM_PREFIX) :]
            try:
                check_record(vm, raw)
            except CorruptRecordError as e:
                corrupt.append({"id": vm, "error": str(e)})
                continue
            r = engine.base_for(vm, raw)
            if r is not None and not r.deleted:
                out.append(public(r.record))
        return web.json_response({"vms": out, "corrupt": corrupt})

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
                raise Problem("invalid-field", f"{name}: {e}", field=name) from None
        since, until = when["since"], when["until"]
        status = q.get("status")
        if status is not None and status not in ("resolved", "siblings", "manual", "superseded"):
            raise Problem(
                "invalid-field",
                "status: one of resolved, siblings, manual, superseded",
                field="status",
            )
        raw_limit = q.get("limit", "1000")
        limit = int(raw_limit) if re.fullmatch(r"[0-9]{1,5}", raw_limit) else 0
        if not 1 <= limit <= MAX_LIMIT:
            raise Problem(
                "invalid-field", f"limit: an integer from 1 to {MAX_LIMIT}", field="limit"
            )
        engine = self.engine()
        entries = engine.log.query(
            vm=q.get("vm"),
            since_ms=since,
            until_ms=until,
            status=status,
            include_superseded=q.get("all") in ("1", "true", "yes"),
            limit=limit,
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
            raise Problem("not-found", f"no conflict {ident!r} known to this node")
        return web.json_response({**e, "events": engine.log.history(e["key"])})

    def _vm_of(self, ident: str) -> str | None:
        e = self.engine().log.get(ident)
        return str(e["vm"]) if e is not None and isinstance(e.get("vm"), str) else None

    async def resolve(self, request: web.Request) -> web.Response:

        ident = request.match_info["id"]
        body = await validated(request, ConflictResolve)
        given = body.given()
        if len(given) != 1 or len(given) != len(body.model_fields_set):
            raise Problem(
                "invalid-field",
                "give exactly one of pick, values or accept (not null), not "
                f"{', '.join(sorted(body.model_fields_set)) or 'none'}",
                field="pick",
            )
        vm = self._vm_of(ident)
        if vm is None:
            raise Problem("not-found", f"no conflict {ident!r} known to this node")
        entry_id = str((self.engine().log.get(ident) or {}).get("id", ident))
        change = Resolve(entry_id, body.pick, dict(body.values or {}), body.accept)
        return await self.write(request, vm, change)

    async def rollback(self, request: web.Request) -> web.Response:

        ident = request.match_info["id"]
        vm = self._vm_of(ident)
        if vm is None:
            raise Problem("not-found", f"no conflict {ident!r} known to this node")
        entry_id = str((self.engine().log.get(ident) or {}).get("id", ident))
        return await self.write(request, vm, Rollback(entry_id))


def _when(raw: str | None) -> int | None:
    """ms since the epoch, from digits or an RFC 3339 / ISO 8601 time."""
    if raw is None:
        return None
    if re.fullmatch(r"[0-9]{1,15}", raw):
        return int(raw)
    text = raw.strip()
    if not re.match(r"[0-9]{4}-", text):
        raise ValueError(f"{raw[:40]!r} is neither ms since the epoch nor an ISO 8601 time")
    text = text.replace("t", "T").replace("z", "Z").replace("Z", "+00:00")
    text = re.sub(r"(T[0-9]{2}:[0-9]{2}):60", r"\1:59", text)  # a leap second
    try:
        t = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"{raw[:40]!r} is neither ms since the epoch nor an ISO 8601 time"
        ) from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=datetime.UTC)
    return int(t.timestamp() * 1000)


def _is_record(vm: str, raw: bytes) -> bool:
    try:
        check_record(vm, raw)
    except CorruptRecordError:
        return False
    return True


def _corrupt(vm: str, raw: bytes) -> Problem:
    try:
        check_record(vm, raw)
        why = "unreadable"
    except CorruptRecordError as e:
        why = str(e)
    return Problem(
        "corrupt-record",
        f"the value stored for VM {vm!r} is not a VM record ({why}); "
        f"DELETE /v1/vms/{vm} removes it",
        id=vm,
    )
