"""The conflict engine: one per node, beside its federation replica (sans-IO).

It watches the replica's VM copies (``vm/{id}@{region}``: each region's latest write of a
VM, an LWW register stamped by that region's log index) and keeps, per VM:

* the **copies** it applied, one per region, and the copies it **holds back**: a copy that
  has seen a write of another region this replica does not have yet (its vector is ahead
  of that region's copy here) waits until that write arrives (a causal-dependency
  violation: buffered, not applied; counted);
* copies written under a **stale fencing epoch** (the region's epoch is older than the one
  the federation file declares for it): applied but never merged; each is a conflict
  parked for a manual decision;
* the **resolved record** (:mod:`.resolve`): the heads' merge under the policies, then the
  one rule that spans VMs, an address leased twice (:mod:`.ipam`);
* the **entries**: the current conflict of each VM, the conflicts its copies' lineage
  closed (carried in the records), parked stale writes, double allocations. Changes to them
  become audit events (:mod:`.audit`), handed to the owner as writes to persist.

Everything it shows is a function of the copies it holds and its configuration, never of
the order they arrived in: replicas holding the same copies show the same records and the
same entries.
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from novacron_core.conflict import ipam
from novacron_core.conflict.audit import AUDIT, SUPERSEDED, AuditDurable, AuditLog, keyed
from novacron_core.conflict.policy import Policies
from novacron_core.conflict.record import Copy, canon, parse_copy, same_json
from novacron_core.conflict.resolve import Resolved, dedupe_closed, entry_id, resolve
from novacron_core.conflict.writes import Change, Known, Prepared, Result, WriteContext, prepare

PREFIX = "vm/"
RESERVE_S = 30.0  # how long a leader keeps an address it leased for a write in flight


def split_key(key: str) -> tuple[str, str | None] | None:
    """``vm/{id}@{region}`` -> (id, region); ``vm/{id}`` -> (id, None) (a pre-conflict
    publisher's key: the writer is the record's home region)."""
    if not key.startswith(PREFIX):
        return None
    rest = key[len(PREFIX) :]
    vm, sep, region = rest.partition("@")
    if not vm:
        return None
    return vm, (region if sep and region else None)


def copy_key(vm: str, region: str) -> str:
    return f"{PREFIX}{vm}@{region}"


@dataclass
class Stats:
    closed: int = 0
    superseded: int = 0
    held: int = 0  # copies held back for a missing dependency (ever)
    stale: int = 0  # copies written under a stale fencing epoch (ever)
    readdressed: int = 0


class ConflictEngine:
    def __init__(
        self,
        region: str,
        durable: AuditDurable | None = None,
        policies: Policies | None = None,
        pools: Mapping[str, str] | None = None,
        fencing: Mapping[str, int] | None = None,
        kind: str = "vm",
    ) -> None:
        self.region = region
        self.kind = kind
        self.durable = durable
        self.policies = policies or Policies()
        self.pools: dict[str, ipaddress.IPv4Network] = ipam.parse_pools(
            pools if pools is not None else ipam.default_pools([region])
        )
        self.fencing: dict[str, int] = dict(fencing or {})
        self.copies: dict[str, dict[str, Copy]] = {}
        self.held: dict[str, dict[str, Copy]] = {}
        self.resolved: dict[str, Resolved] = {}
        self.views: dict[str, dict[str, Any]] = {}  # after re-addressing
        self.vm_entries: dict[str, dict[str, dict[str, Any]]] = {}  # vm -> key -> entry
        self.dup_entries: dict[str, dict[str, Any]] = {}
        self._ip_holders: dict[str, set[tuple[str, str]]] = {}  # ip -> {(vm, nic)}
        self._vm_ips: dict[str, set[str]] = {}
        self._readdressed: dict[str, list[ipam.Readdress]] = {}  # VM -> its NICs moved
        self.dirty: set[str] = set()
        self.log = AuditLog(durable)
        self.stats = Stats()
        self.reserved: dict[str, float] = {}  # address -> until (a write in flight leased it)
        self.latest_stamp: tuple[int, int, str] | None = None  # the newest copy's HLC

    # ------------------------------------------------------------ configuration

    def configure(
        self,
        policies: Policies,
        pools: Mapping[str, str] | None = None,
        fencing: Mapping[str, int] | None = None,
    ) -> None:
        """New policies (or pools, or fencing epochs): every VM is decided again on the next
        :meth:`settle`; entries whose decision changed are logged as updated."""
        changed = policies != self.policies
        self.policies = policies
        if pools is not None:
            new = ipam.parse_pools(pools)
            changed = changed or new != self.pools
            self.pools = new
        if fencing is not None and dict(fencing) != self.fencing:
            self.fencing = dict(fencing)
            changed = True
        if changed:
            self.dirty |= set(self.copies) | set(self.held)

    # ------------------------------------------------------------ input

    def on_copy(self, key: str, raw: Any) -> None:
        """A replica's copy changed (``Store.subscribe`` calls this)."""
        parsed = split_key(key)
        if parsed is None or raw is None:
            return
        vm, region = parsed
        c = parse_copy(raw, region or "")
        if c is None or c.vm != vm:
            return
        have = self.copies.get(vm, {}).get(c.region)
        held = self.held.get(vm, {}).get(c.region)
        if (have is not None and have.n >= c.n) or (held is not None and held.n >= c.n):
            return  # older or the same (a duplicate, or a region's earlier write)
        self.held.setdefault(vm, {})[c.region] = c
        self.dirty.add(vm)
        if self.latest_stamp is None or c.hlc > self.latest_stamp:
            self.latest_stamp = c.hlc

    def _release(self, vm: str) -> None:
        """Apply the held copies whose dependencies are here: every region a copy has seen
        up to n has a copy at n or later here, applied or released with it. (A region's
        latest copy stands for its earlier writes, which the federation may never deliver
        one by one, so copies that depend on each other's regions go in together.)"""
        held, have = self.held.get(vm, {}), self.copies.setdefault(vm, {})
        if not held:
            return
        going = dict(held)
        changed = True
        while changed and going:
            changed = False
            for region, c in sorted(going.items()):
                for r, n in c.vv.items():
                    if r == region:
                        continue
                    got = going.get(r) or have.get(r)
                    if got is None or got.n < n:
                        del going[region]
                        changed = True
                        break
        for region, c in going.items():
            have[region] = c
            del held[region]
        for c in held.values():
            if not c.counted:
                self.stats.held += 1
                c.counted = True
        if not held:
            self.held.pop(vm, None)

    # ------------------------------------------------------------ deciding

    def settle(self, now_ms: int) -> list[Any]:
        """Decide every VM whose copies (or configuration) changed; the audit events this
        produced, as writes to persist."""
        if not self.dirty:
            return []
        dirty, self.dirty = self.dirty, set()
        for vm in sorted(dirty):
            self._release(vm)
            self._decide(vm)
        touched = self._double_allocations() | dirty
        for vm in touched:
            self._entries(vm)
        writes = self._audit(touched, now_ms)
        return writes

    def _live(self, vm: str) -> list[Copy]:
        return [c for c in self.copies.get(vm, {}).values() if not self._stale(c)]

    def _stale(self, c: Copy) -> bool:
        return c.epoch < self.fencing.get(c.region, 0)

    def _decide(self, vm: str) -> None:
        r = resolve(vm, self._live(vm), self.policies, self.kind)
        if r is None:
            self.resolved.pop(vm, None)
            self.views.pop(vm, None)
            self._index_ips(vm, None)
            return
        self.resolved[vm] = r
        self.views[vm] = r.record
        self._index_ips(vm, r.record)

    def _index_ips(self, vm: str, record: Mapping[str, Any] | None) -> None:
        for ip in self._vm_ips.pop(vm, set()):
            holders = self._ip_holders.get(ip)
            if holders is not None:
                holders.difference_update({h for h in holders if h[0] == vm})
                if not holders:
                    del self._ip_holders[ip]
        if record is None or record.get("lifecycle") == "deleted":
            return
        ips = set()
        for nic, addr in ipam.addresses(record):
            self._ip_holders.setdefault(addr["ip"], set()).add((vm, nic))
            ips.add(addr["ip"])
        self._vm_ips[vm] = ips

    def _double_allocations(self) -> set[str]:
        """Re-address NICs that hold an address leased twice; the VMs whose view changed."""
        dups = {ip for ip, hs in self._ip_holders.items() if len(hs) > 1}
        before = set(self._readdressed)
        moved: dict[str, list[ipam.Readdress]] = {}
        entries: dict[str, dict[str, Any]] = {}
        changed: set[str] = set()
        if dups:
            involved = {vm for ip in dups for vm, _ in self._ip_holders[ip]}
            views = {vm: self.resolved[vm].record for vm in involved}
            # every address in use anywhere is taken, not only the contested ones
            found = ipam.double_allocations(views, self.pools, set(self._ip_holders))
            new_views: dict[str, dict[str, Any]] = {}
            for ra in found:
                rec = new_views.get(ra.vm, views[ra.vm])
                new_views[ra.vm] = ipam.readdressed(rec, ra) if ra.new_ip else rec
                if ra.new_ip:
                    moved.setdefault(ra.vm, []).append(ra)
                e = _dup_entry(ra)
                entries[e["id"]] = e
            for vm, rec in new_views.items():
                if self.views.get(vm) != rec:
                    self.views[vm] = rec
                    changed.add(vm)
        self._readdressed = moved
        for vm in before - set(self._readdressed):
            if vm in self.resolved:
                self.views[vm] = self.resolved[vm].record
                changed.add(vm)
        old_vms = {e["vm"] for e in self.dup_entries.values()}
        if entries != self.dup_entries:
            changed |= old_vms | {e["vm"] for e in entries.values()}
            self.dup_entries = entries
        return changed

    def _entries(self, vm: str) -> None:
        out: list[dict[str, Any]] = []
        r = self.resolved.get(vm)
        if r is not None:
            rec = r.record
            parked = set(rec.get("pending") or {})
            sibs = {
                s.get("conflict")
                for s in (rec.get("siblings") or {}).values()
                if isinstance(s, dict)
            }
            for e in dedupe_closed(rec.get("history", {}).get("closed", [])):
                out.append({**e, "status": _status(e, parked, sibs)})
            if r.entry is not None:
                out.append(r.entry)
        for c in sorted(self.copies.get(vm, {}).values(), key=lambda c: c.dot):
            if self._stale(c):
                e = _stale_entry(c, self.fencing.get(c.region, 0), r)
                if not any(x.get("id") == e["id"] for x in out):
                    out.append(e)
        out.extend(e for e in self.dup_entries.values() if e["vm"] == vm)
        self.vm_entries[vm] = keyed(out)

    def _audit(self, vms: Iterable[str], now_ms: int) -> list[Any]:
        writes: list[Any] = []
        vms = set(vms)
        for vm in sorted(vms):
            now = self.vm_entries.get(vm, {})
            for key, entry in sorted(now.items()):
                prev = self.log.state.get(key)
                if prev is not None and same_json(prev, entry):
                    continue
                if prev is None:
                    event = "closed" if entry.get("closed_by") else "detected"
                elif entry.get("closed_by") and not prev.get("closed_by"):
                    event = "closed"
                else:
                    event = "updated"
                self._count(event, entry, prev)
                writes.append((AUDIT, self.log.record(event, key, entry, now_ms)))
            closers: dict[str, list[str]] = {}
            for e in now.values():
                if e.get("closed_by"):
                    closers.setdefault(e["id"], []).extend(e["closed_by"])
            for key in [k for k in self.log.order if self.log.state[k].get("vm") == vm]:
                prev = self.log.state[key]
                if key in now or prev.get("closed_by") or prev.get("status") == SUPERSEDED:
                    continue
                if prev.get("id") in closers:
                    # closed by writes that decided differently: it lives on under their keys
                    done = {**prev, "closed_by": sorted(set(closers[prev["id"]]))}
                    writes.append((AUDIT, self.log.record("closed", key, done, now_ms)))
                    continue
                gone = {**prev, "status": SUPERSEDED}
                self.stats.superseded += 1
                writes.append((AUDIT, self.log.record("superseded", key, gone, now_ms)))
        return writes

    def _count(self, event: str, entry: dict[str, Any], prev: dict[str, Any] | None) -> None:
        if event == "closed":
            self.stats.closed += 1
        if "stale-epoch" in entry.get("kinds", []) and event == "detected":
            self.stats.stale += 1
        if "double-allocation" in entry.get("kinds", []) and event == "detected":
            self.stats.readdressed += 1

    # ------------------------------------------------------------ writing

    def base_for(self, vm: str, own_raw: bytes | None) -> Resolved | None:
        """The record a write of this region builds on: the replica's copies with the
        region's own latest copy (which may be newer than what the replica holds)."""
        own = parse_copy(own_raw, self.region) if own_raw is not None else None
        live = {c.region: c for c in self._live(vm)}
        if own is not None and (self.region not in live or own.n > live[self.region].n):
            live[self.region] = own
        r = resolve(vm, list(live.values()), self.policies, self.kind)
        if r is not None:
            for ra in self._readdressed.get(vm, []):  # a double allocation moved a NIC
                r.record = ipam.readdressed(r.record, ra)
        return r

    def prepare(
        self, vm: str, change: Change, own_raw: bytes | None, ctx: WriteContext, now: float
    ) -> Result:
        """Prepare this region's write of ``vm`` (see :mod:`.writes`); addresses it leases
        are reserved for RESERVE_S so that a second write in flight does not take them."""
        self.reserved = {ip: t for ip, t in self.reserved.items() if t > now}
        base = self.base_for(vm, own_raw)
        known = Known(
            writes=self.policies.writes,
            pools=self.pools,
            used=set(self._ip_holders) | set(self.reserved),
            open_entries=self.entries_of(vm),
            closed_entries=[e for e in self.vm_entries.get(vm, {}).values() if e.get("closed_by")]
            + [e for e in self.log.query(vm=vm) if e.get("closed_by")],
        )
        out = prepare(vm, change, own_raw, base, ctx, known)
        if isinstance(out, Prepared):
            for ip in out.allocated:
                self.reserved[ip] = now + RESERVE_S
        return out

    # ------------------------------------------------------------ reading

    def view(self, vm: str) -> dict[str, Any] | None:
        """The record this replica shows for ``vm`` (None: no copy of it)."""
        return self.views.get(vm)

    def records(self, include_deleted: bool = False) -> list[dict[str, Any]]:
        return [
            v
            for _, v in sorted(self.views.items())
            if include_deleted or v.get("lifecycle") != "deleted"
        ]

    def current(self) -> dict[str, dict[str, Any]]:
        """Every entry this replica's copies imply now (closed ones included)."""
        out: dict[str, dict[str, Any]] = {}
        for es in self.vm_entries.values():
            out.update(es)
        return out

    def entries_of(self, vm: str) -> list[dict[str, Any]]:
        """The VM's open entries (its current conflict, parked stale writes, double
        allocations): what a write on top of its record closes."""
        return [e for e in self.vm_entries.get(vm, {}).values() if not e.get("closed_by")]

    def counts(self) -> dict[str, Any]:
        live = self.log.live()
        pending = sum(
            1 for e in live.values() if e.get("status") == "manual" and not e.get("closed_by")
        )
        return {
            "detected": sum(1 for e in self.log.state.values() if e.get("status") != SUPERSEDED),
            "open": sum(1 for e in live.values() if not e.get("closed_by")),
            "closed": sum(1 for e in live.values() if e.get("closed_by")),
            "manual_pending": pending,
            "superseded": sum(1 for e in self.log.state.values() if e.get("status") == SUPERSEDED),
            "held": sum(len(h) for h in self.held.values()),
            "held_total": self.stats.held,
            "stale_epoch": self.stats.stale,
            "readdressed": self.stats.readdressed,
            "by_kind": dict(sorted(self.by_kind().items())),
            "by_strategy": dict(sorted(self.by_strategy().items())),
        }

    def by_kind(self) -> Counter[str]:
        """Conflicts in the audit trail (superseded ones aside), by kind."""
        return Counter(k for e in self.log.live().values() for k in e.get("kinds", []))

    def by_strategy(self) -> Counter[str]:
        """Contested fields in the audit trail, by the strategy that decided them."""
        return Counter(
            str(f.get("strategy")) for e in self.log.live().values() for f in e.get("fields", [])
        )


def _status(e: dict[str, Any], parked: set[str], sibs: set[Any]) -> str:
    """A closed conflict is still manual while its values stay parked in the record, still
    siblings while its siblings are kept; resolved once a write settled them."""
    if e["id"] in parked:
        return "manual"
    if e["id"] in sibs:
        return "siblings"
    return "resolved" if e.get("status") in ("manual", "siblings") else str(e.get("status"))


def _dup_entry(ra: ipam.Readdress) -> dict[str, Any]:
    holders = [f"{ra.kept_by}@{canon(ra.kept_lease)}", f"{ra.vm}/{ra.nic}@{canon(ra.lease)}"]
    eid = entry_id("double-allocation", ra.vm, holders)
    old = {"ip": ra.ip, "lease": ra.lease}
    new = {"ip": ra.new_ip, "readdressed_from": ra.ip}
    when = [t for t in (ra.lease, ra.kept_lease) if isinstance(t, list) and t]
    return {
        "id": eid,
        "vm": ra.vm,
        "vms": sorted({ra.vm, ra.kept_by}),
        "kinds": ["double-allocation"],
        "at_ms": max((int(t[0]) for t in when), default=0),
        "heads": [],
        "base": None,
        "fields": [
            {
                "path": f"nics.{ra.nic}.address",
                "unit": "address",
                "strategy": "merge",
                "outcome": "readdressed" if ra.new_ip else "parked",
                "value": new if ra.new_ip else None,
                "from": None,
                "why": f"{ra.ip} is leased to {ra.kept_by} too; the earlier lease "
                f"({ra.kept_lease}) keeps it"
                + (f", {ra.vm} moves to {ra.new_ip}" if ra.new_ip else ": the pool is full"),
                "overwritten": [{"value": old, "from": ra.vm}],
                "candidates": [{"value": old, "from": ra.vm}],
                "kind": "field",
            }
        ],
        "merged": {},
        "status": "resolved" if ra.new_ip else "manual",
        "resolution": "auto",
        "closed_by": [],
    }


def _stale_entry(c: Copy, epoch: int, current: Resolved | None) -> dict[str, Any]:
    eid = entry_id("stale-epoch", c.vm, [c.dot])
    cur = current.record if current is not None else {}
    fields = []
    for k, v in sorted(c.fields.items()):
        if canon(cur.get(k)) != canon(v):
            fields.append(
                {
                    "path": k,
                    "unit": "record",
                    "strategy": "manual",
                    "outcome": "parked",
                    "value": cur.get(k),
                    "from": None,
                    "why": f"written under fencing epoch {c.epoch} of {c.region}, which is at "
                    f"epoch {epoch}: not applied; resolve to accept or discard it",
                    "overwritten": [],
                    "candidates": [{"value": v, "from": c.dot}],
                    "kind": "field",
                }
            )
    return {
        "id": eid,
        "vm": c.vm,
        "kinds": ["stale-epoch"],
        "at_ms": c.hlc[0],
        "heads": [
            {
                "dot": c.dot,
                "region": c.region,
                "hlc": list(c.hlc),
                "epoch": c.epoch,
                "source": c.source,
            }
        ],
        "base": None,
        "fields": fields,
        "merged": {},
        "status": "manual",
        "resolution": "auto",
        "closed_by": [],
    }
