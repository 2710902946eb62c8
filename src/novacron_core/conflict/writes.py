"""Writing a VM: a change applied on top of what the region knows (sans-IO, pure).

A region's leader prepares every VM write here and then commits it through its group with
a compare-and-swap on the region's own copy (``vm/{id}`` in its KV), so the region's writes
stay linearizable. The base of a write is the merge of the copies the node's replica holds
and the region's own latest copy (:func:`prepare`):

* ``vv`` = the join of the base's heads, with this region's counter one past its own last
  write: the write has seen everything the base had;
* ``history.base`` = the checkpoint later merges use as common ancestor: the merged record
  when the base was a merge, the other region's write when it was one, and the region's
  own write's checkpoint when the region continues its own line of writes;
* ``history.closed`` += the base's open conflicts, closed by this write (``closed_by``
  names it): a write on top of a merged record accepts its decisions, and carries the
  entries, so every replica learns them even if it never saw the concurrent writes;
* ``siblings`` and ``pending`` are carried, except the paths this write sets;
* lifecycle changes must follow :data:`~.record.TRANSITIONS`; otherwise the write is
  refused (409) naming the current state.
"""

from __future__ import annotations

import copy
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from novacron_core.conflict import ipam
from novacron_core.conflict.merge import MISSING, set_at, value_at
from novacron_core.conflict.record import (
    SCHEMA,
    TRANSITIONS,
    WRITES_LABEL,
    Copy,
    Stamp,
    dot_str,
    dumps,
    fields_of,
    mac_for,
    parse_copy,
    path_to,
    power_of,
    vv_join,
)
from novacron_core.conflict.resolve import Resolved, closed_union, dedupe_closed, snapshot

# --------------------------------------------------------------------- changes


@dataclass(frozen=True)
class Create:
    id: str
    name: str
    spec: Mapping[str, Any]
    power: str = "off"
    labels: Mapping[str, str] = field(default_factory=dict)
    tags: tuple[str, ...] = ()
    description: str = ""
    nics: tuple[str, ...] = ("eth0",)


@dataclass(frozen=True)
class SetSpec:
    spec: Mapping[str, Any]


@dataclass(frozen=True)
class Power:
    state: str  # on | off


@dataclass(frozen=True)
class Transition:
    state: str


@dataclass(frozen=True)
class Reboot:
    pass


@dataclass(frozen=True)
class Place:
    host: str
    zone: str | None = None


@dataclass(frozen=True)
class Readdress:
    nic: str = "eth0"
    ip: str | None = None  # None: the lowest free address of the NIC's pool


@dataclass(frozen=True)
class Patch:
    name: str | None = None
    labels: Mapping[str, str | None] = field(default_factory=dict)  # None removes a label
    add_tags: tuple[str, ...] = ()
    remove_tags: tuple[str, ...] = ()
    description: str | None = None


@dataclass(frozen=True)
class Delete:
    pass


@dataclass(frozen=True)
class Resolve:
    """Decide a conflict by hand: take every contested value from one write (``pick``, a
    dot such as ``us-west1:4``), or give values per path; for a write parked under a stale
    fencing epoch, ``accept`` applies it and ``discard`` drops it."""

    conflict: str
    pick: str | None = None
    values: Mapping[str, Any] = field(default_factory=dict)
    accept: bool | None = None


@dataclass(frozen=True)
class Rollback:
    """Undo a conflict's resolution: its decided fields go back to the common ancestor's
    values and the conflict is parked for a manual decision."""

    conflict: str


Change = (
    Create | SetSpec | Power | Transition | Reboot | Place | Readdress | Patch | Delete | Resolve
) | Rollback


@dataclass(frozen=True)
class WriteContext:
    region: str
    hlc: Stamp
    epoch: int = 0
    who: str = ""
    source: str = "api"
    role: str = ""


@dataclass(frozen=True)
class Refusal:
    """The write was not made (certainly: nothing was proposed)."""

    status: int  # 404 | 409 | 421 | 422
    detail: str
    field: str | None = None
    current: str | None = None  # the lifecycle state a 409 refers to
    home: str | None = None  # a 421's home region; a refused create's owner


@dataclass(frozen=True)
class Prepared:
    key: str  # the region's KV key
    expected: bytes | None  # the region's copy now (compare-and-swap on it)
    value: bytes
    record: dict[str, Any]
    allocated: tuple[str, ...] = ()  # addresses this write leases (reserved by the caller)
    closes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Unchanged:
    record: dict[str, Any]


Result = Prepared | Refusal | Unchanged


@dataclass
class Known:
    """What the preparing node knows besides the VM: policies' write mode, the pools, the
    addresses in use, and the VM's open conflicts (from the conflict engine)."""

    writes: str = "home"
    pools: Mapping[str, ipaddress.IPv4Network] = field(default_factory=dict)
    used: set[str] = field(default_factory=set)
    open_entries: list[dict[str, Any]] = field(default_factory=list)
    closed_entries: list[dict[str, Any]] = field(default_factory=list)  # from the audit log


def mode_of(record: Mapping[str, Any] | None, default: str) -> str:
    labels = record.get("labels") if record else None
    m = labels.get(WRITES_LABEL) if isinstance(labels, dict) else None
    return m if m in ("home", "multi") else default


def prepare(
    vm: str,
    change: Change,
    own_raw: bytes | None,
    base: Resolved | None,
    ctx: WriteContext,
    known: Known,
) -> Result:
    """The write ``change`` makes on top of ``base`` (the engine's resolved record of the
    VM, already joined with the region's own copy ``own_raw``)."""
    key = f"vm/{vm}"
    own = parse_copy(own_raw, ctx.region) if own_raw is not None else None
    current = base.record if base is not None else None
    exists = current is not None and current.get("lifecycle") != "deleted"
    if isinstance(change, Create):
        if exists:
            assert current is not None
            # (issue 13 item 9: an id another region created is refused naming that region;
            # until the global group agrees ownership, two creates racing ahead of the
            # federation's propagation can still both succeed - they are then a conflict)
            home = str(current.get("home_region", ""))
            where = f" in region {home}" if home and home != ctx.region else ""
            return Refusal(409, f"VM {vm!r} exists{where}", "id", home=home or None)
    else:
        if not exists:
            return Refusal(404, f"no VM {vm!r}")
        assert current is not None
        home = str(current.get("home_region", ""))
        if mode_of(current, known.writes) == "home" and home != ctx.region:
            return Refusal(
                421,
                f"VM {vm!r} is written only in its home region {home} (writes: home); "
                f"send the request there, or label it {WRITES_LABEL}=multi",
                home=home,
            )
    fields = copy.deepcopy(fields_of(current)) if current is not None else {}
    allocated: list[str] = []
    closes: set[str] = set()
    resolved_as: dict[str, dict[str, Any]] = {}
    touched: set[str] = set()
    pending = copy.deepcopy(dict(current.get("pending") or {})) if current else {}
    siblings = copy.deepcopy(dict(current.get("siblings") or {})) if current else {}
    marks = dict(current.get("marks") or {}) if current else {}
    out = _apply(vm, change, fields, ctx, known, allocated, touched, pending, resolved_as)
    if isinstance(out, Refusal):
        return out
    if isinstance(out, Unchanged):
        assert current is not None
        return Unchanged(current)
    for path in touched:
        siblings.pop(path, None)
    heads = base.heads if base is not None else []
    vv = vv_join(h.vv for h in heads) if heads else {}
    mine = max(vv.get(ctx.region, 0), own.n if own is not None else 0)
    vv[ctx.region] = mine + 1
    vv = dict(sorted(vv.items()))
    dot = dot_str(ctx.region, mine + 1)
    if isinstance(change, Create | Power | Transition | Reboot | Delete):
        marks["lifecycle"] = dot  # a lifecycle operation, even one ending where it began
    for item in pending.values():
        if isinstance(item, dict) and item.get("vv") == {}:
            item["vv"] = vv  # parked by this write (a rollback): seen by whoever sees it
    closed = closed_union(heads) if heads else []
    for e in known.open_entries:
        if "stale-epoch" in e.get("kinds", []) and e["id"] not in resolved_as:
            continue  # a fenced write stays parked until someone accepts or discards it
        closes.add(e["id"])
        done = {**e, "closed_by": [dot], "closed_at": list(ctx.hlc)}
        done.update(resolved_as.pop(e["id"], {}))
        closed.append(done)
    for ident, how in resolved_as.items():  # closed before: resolved or rolled back now
        prior = next((e for e in known.closed_entries if e.get("id") == ident), {"id": ident})
        closed.append({**prior, **how, "closed_by": [dot], "closed_at": list(ctx.hlc)})
        closes.add(ident)
    record: dict[str, Any] = {
        "schema": SCHEMA,
        "kind": "vm",
        "id": vm,
        **fields,
        "power": power_of(str(fields.get("lifecycle", "pending"))),
        "vv": vv,
        "version": sum(vv.values()),
        "writer": {
            "region": ctx.region,
            "hlc": list(ctx.hlc),
            "epoch": ctx.epoch,
            "source": ctx.source,
            "who": ctx.who,
            "role": ctx.role,
        },
        "history": {"base": _checkpoint(base, ctx.region), "closed": dedupe_closed(closed)},
        "siblings": siblings,
        "pending": pending,
        "marks": dict(sorted(marks.items())),
    }
    return Prepared(key, own_raw, dumps(record), record, tuple(allocated), tuple(sorted(closes)))


def _checkpoint(base: Resolved | None, region: str) -> dict[str, Any] | None:
    if base is None:
        return None
    if base.merged or len(base.heads) != 1:
        return base.base
    h = base.heads[0]
    if h.region != region:
        return snapshot(h.fields, h.vv, h.dot, h.marks)
    return h.base  # continuing our own line: its checkpoint stays the common one


def _apply(
    vm: str,
    change: Change,
    fields: dict[str, Any],
    ctx: WriteContext,
    known: Known,
    allocated: list[str],
    touched: set[str],
    pending: dict[str, Any],
    resolved_as: dict[str, dict[str, Any]],
) -> Refusal | Unchanged | None:
    state = str(fields.get("lifecycle", "pending"))
    if isinstance(change, Create):
        fields.clear()
        running = change.power == "on"
        fields.update(
            {
                "name": change.name,
                "home_region": ctx.region,
                "spec": dict(change.spec),
                "lifecycle": "running" if running else "pending",
                "placement": _placement(vm, ctx, None, running),
                "nics": [],
                "labels": dict(change.labels),
                "tags": sorted(set(change.tags)),
                "description": change.description,
                "stats": {"restarts": 0, "migrations": 0},
            }
        )
        for nic in change.nics:
            got = _lease(vm, fields, nic, ctx.region, ctx, known, allocated)
            if isinstance(got, Refusal):
                return got
        touched.update(["name", "spec", "lifecycle", "placement", "nics", "labels", "tags"])
        return None
    if isinstance(change, SetSpec):
        fields["spec"] = {**fields.get("spec", {}), **dict(change.spec)}
        touched.update(f"spec.{k}" for k in change.spec)
        return None
    if isinstance(change, Power):
        goal = "running" if change.state == "on" else "stopped"
        if state == goal:
            return Unchanged({})
        if _walk(state, goal) is None:
            return _illegal(vm, state, f"power {change.state}")
        fields["lifecycle"] = goal
        if goal == "running":
            fields["placement"] = _placement(vm, ctx, fields.get("placement"), True)
        touched.update(["lifecycle", "placement"])
        return None
    if isinstance(change, Transition):
        if change.state not in TRANSITIONS.get(state, frozenset()):
            return _illegal(vm, state, f"move to {change.state}")
        fields["lifecycle"] = change.state
        if change.state == "running":
            fields["placement"] = _placement(vm, ctx, fields.get("placement"), True)
        touched.update(["lifecycle", "placement"])
        return None
    if isinstance(change, Reboot):
        if state != "running":
            return _illegal(vm, state, "reboot (it must be running)")
        stats = dict(fields.get("stats") or {})
        stats["restarts"] = int(stats.get("restarts", 0)) + 1
        fields["stats"] = stats
        touched.add("stats.restarts")
        return None
    if isinstance(change, Place):
        if state in ("deleted", "stopping"):
            return _illegal(vm, state, "place it")
        old = fields.get("placement") or {}
        fields["placement"] = {
            "region": old.get("region", fields.get("home_region")),
            "zone": change.zone,
            "host": change.host,
            "placed_at": list(ctx.hlc),
        }
        if state == "running" and old.get("host") not in (None, change.host):
            stats = dict(fields.get("stats") or {})
            stats["migrations"] = int(stats.get("migrations", 0)) + 1
            fields["stats"] = stats
            touched.add("stats.migrations")
        touched.add("placement")
        return None
    if isinstance(change, Readdress):
        nics = fields.get("nics") or []
        found = [n for n in nics if isinstance(n, dict) and n.get("name") == change.nic]
        if not found:
            return Refusal(404, f"nics.{change.nic}: the VM has no such NIC", f"nics.{change.nic}")
        pool = (found[0].get("address") or {}).get("pool") or fields.get("home_region")
        got = _lease(vm, fields, change.nic, str(pool), ctx, known, allocated, change.ip)
        if isinstance(got, Refusal):
            return got
        touched.add(f"nics.{change.nic}.address")
        return None
    if isinstance(change, Patch):
        if change.name is not None:
            fields["name"] = change.name
            touched.add("name")
        labels = dict(fields.get("labels") or {})
        for k, v in change.labels.items():
            if v is None:
                labels.pop(k, None)
            else:
                labels[k] = v
            touched.add(f"labels.{k}")
        fields["labels"] = labels
        tags = (set(fields.get("tags") or []) | set(change.add_tags)) - set(change.remove_tags)
        fields["tags"] = sorted(tags)
        if change.description is not None:
            fields["description"] = change.description
            touched.add("description")
        return None
    if isinstance(change, Delete):
        if _walk(state, "deleted") is None:
            return _illegal(vm, state, "delete")
        fields["lifecycle"] = "deleted"
        touched.add("lifecycle")
        return None
    if isinstance(change, Resolve):
        return _resolve(change, fields, ctx, known, pending, touched, resolved_as)
    if isinstance(change, Rollback):
        return _rollback(change, fields, ctx, known, pending, touched, resolved_as)
    return Refusal(422, f"unknown change {change!r}")


IN_PROGRESS = frozenset({"stopping", "migrating"})  # someone else is driving these


def _walk(state: str, goal: str) -> list[str] | None:
    """The states a power or delete request walks through: any path of allowed transitions,
    except out of an operation in progress (stopping, migrating), which must finish first:
    only its own next state is reachable."""
    if state in IN_PROGRESS:
        return [goal] if goal in TRANSITIONS[state] else None
    return path_to(state, goal)


def _illegal(vm: str, state: str, what: str) -> Refusal:
    allowed = sorted(TRANSITIONS.get(state, frozenset()))
    return Refusal(
        409,
        f"VM {vm!r} is {state}: cannot {what} (from {state} it can move to "
        f"{', '.join(allowed) or 'nothing'})",
        "lifecycle",
        current=state,
    )


def _placement(vm: str, ctx: WriteContext, old: Any, running: bool) -> dict[str, Any]:
    old = old if isinstance(old, dict) else {}
    if not running or old.get("host"):
        return {
            "region": old.get("region", ctx.region),
            "zone": old.get("zone"),
            "host": old.get("host"),
            "placed_at": old.get("placed_at"),
        }
    region = old.get("region") or ctx.region
    # a stand-in scheduler: a host of the VM's region, fixed per VM
    host = f"{region}-host-{sum(vm.encode()) % 16 + 1:02d}"
    return {"region": region, "zone": old.get("zone"), "host": host, "placed_at": list(ctx.hlc)}


def _lease(
    vm: str,
    fields: dict[str, Any],
    nic: str,
    pool_name: str,
    ctx: WriteContext,
    known: Known,
    allocated: list[str],
    ip: str | None = None,
) -> Refusal | None:
    pool = known.pools.get(pool_name)
    if pool is None:
        return Refusal(409, f"nics.{nic}: region {pool_name} has no address pool", f"nics.{nic}")
    mine = {a["ip"] for _, a in ipam.addresses(fields)}
    if ip is not None:
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return Refusal(422, f"ip: {ip!r} is not an IP address", "ip")
        if addr not in pool or int(addr) - int(pool.network_address) < ipam.RESERVED:
            return Refusal(409, f"ip: {ip} is not a leasable address of {pool}", "ip")
        if ip in known.used and ip not in mine:
            return Refusal(409, f"ip: {ip} is leased to another VM", "ip")
        chosen: str | None = ip
    else:
        chosen = ipam.allocate(pool, known.used | mine | set(allocated))
        if chosen is None:
            return Refusal(409, f"nics.{nic}: the pool {pool} of {pool_name} is full", "ip")
    allocated.append(str(chosen))
    nics = [n for n in fields.get("nics") or [] if isinstance(n, dict)]
    found = next((n for n in nics if n.get("name") == nic), None)
    address = {"ip": chosen, "pool": pool_name, "lease": list(ctx.hlc)}
    if found is None:
        nics.append(
            {
                "name": nic,
                "network": "default",
                "mac": mac_for(vm, nic),
                "address": address,
            }
        )
    else:
        found["address"] = address
    fields["nics"] = nics
    return None


def _find(ident: str, known: Known, pending: dict[str, Any]) -> dict[str, Any] | None:
    for e in [*known.open_entries, *known.closed_entries]:
        if e.get("id") == ident:
            return e
    if ident in pending:
        return {"id": ident, "fields": [], "kinds": ["parked"]}
    return None


def _resolve(
    change: Resolve,
    fields: dict[str, Any],
    ctx: WriteContext,
    known: Known,
    pending: dict[str, Any],
    touched: set[str],
    resolved_as: dict[str, dict[str, Any]],
) -> Refusal | None:
    entry = _find(change.conflict, known, pending)
    if entry is None:
        return Refusal(404, f"no conflict {change.conflict!r} on this VM", "conflict")
    paths: dict[str, list[dict[str, Any]]] = {}
    for f in entry.get("fields", []):
        paths[str(f["path"])] = list(f.get("candidates") or [])
    parked = pending.get(change.conflict)
    if isinstance(parked, dict):
        for p, info in (parked.get("fields") or {}).items():
            paths.setdefault(p, list(info.get("candidates") or []))
    chosen: dict[str, Any] = {}
    stale = "stale-epoch" in entry.get("kinds", [])
    if stale:
        if change.accept is None:
            return Refusal(
                422, "accept: true applies the fenced write, false discards it", "accept"
            )
        if change.accept:
            for p, cands in paths.items():
                if cands:
                    chosen[p] = cands[0]["value"]
    elif change.pick is not None:
        for p, cands in paths.items():
            for c in cands:
                if c.get("from") == change.pick:
                    chosen[p] = c.get("value")
        if not chosen:
            dots = sorted({str(c["from"]) for cs in paths.values() for c in cs if c.get("from")})
            return Refusal(
                422,
                f"pick: {change.pick} wrote none of the contested values (one of: "
                f"{', '.join(dots) or 'none'})",
                "pick",
            )
    elif change.values:
        for p, v in change.values.items():
            if p not in paths:
                return Refusal(
                    422,
                    f"values.{p}: not a contested path of {change.conflict} "
                    f"({', '.join(sorted(paths)) or 'none'})",
                    f"values.{p}",
                )
            chosen[p] = v
    else:
        return Refusal(422, "pick (a write's dot) or values (per path) is required", "pick")
    for p, v in chosen.items():
        _set_path(fields, p, v)
        touched.add(p)
    pending.pop(change.conflict, None)
    resolved_as[change.conflict] = {
        "status": "resolved",
        "resolution": "manual",
        "resolved_by": ctx.who or ctx.source,
        "chosen": {p: v for p, v in sorted(chosen.items())},
        **({"accepted": bool(change.accept)} if stale else {}),
    }
    return None


def _rollback(
    change: Rollback,
    fields: dict[str, Any],
    ctx: WriteContext,
    known: Known,
    pending: dict[str, Any],
    touched: set[str],
    resolved_as: dict[str, dict[str, Any]],
) -> Refusal | None:
    entry = _find(change.conflict, known, pending)
    if entry is None or not entry.get("fields"):
        return Refusal(404, f"no resolved conflict {change.conflict!r} on this VM", "conflict")
    if change.conflict in pending:
        return Refusal(409, f"{change.conflict} is parked, not resolved: resolve it", "conflict")
    parked: dict[str, Any] = {}
    for f in entry["fields"]:
        p = str(f["path"])
        if "+" in p:
            continue  # a semantic group: its member paths were decided together
        if f.get("has_base"):
            _set_path(fields, p, MISSING if f.get("base_absent") else f.get("base"))
        parked[p] = {
            "value": f.get("base") if f.get("has_base") else f.get("value"),
            "candidates": list(f.get("candidates") or []),
            "base": f.get("base"),
        }
        touched.add(p)
    pending[change.conflict] = {
        "conflict": change.conflict,
        "vv": {},
        "fields": parked,
    }
    resolved_as[change.conflict] = {
        "status": "manual",
        "resolution": "rolled-back",
        "rolled_back_by": ctx.who or ctx.source,
    }
    return None


def _set_path(fields: dict[str, Any], path: str, value: Any) -> None:
    parts = path.split(".")
    try:
        set_at(
            fields,
            parts,
            MISSING if value is None and value_at(fields, parts) is MISSING else value,
        )
    except StopIteration:
        pass  # a keyed element that is gone: nothing to set


__all__ = [
    "Change",
    "Copy",
    "Create",
    "Delete",
    "Known",
    "Patch",
    "Place",
    "Power",
    "Prepared",
    "Readdress",
    "Reboot",
    "Refusal",
    "Resolve",
    "Rollback",
    "SetSpec",
    "Transition",
    "Unchanged",
    "WriteContext",
    "mode_of",
    "prepare",
]
