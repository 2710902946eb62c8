"""From the regions' copies of one VM to the record every replica shows (pure).

* The **heads** are the copies no other copy has seen (maximal by version vector). One head:
  it is the record. Several: they are concurrent, and the record is their merge.
* The **merge base** is the newest checkpoint every head descends from, taken from the
  snapshots the heads carry (``history.base``, see :mod:`.writes`); none (concurrent
  creations, or a lineage too old) makes every difference a contest.
* The merge is three-way (:mod:`.merge`) with the policy's strategies
  (:mod:`.strategies`); ``mustAgree`` groups taken from different heads are then decided as a
  unit (a semantic conflict).
* The result is a function of the heads, the copies (``vote``) and the policies only, so
  every replica holding the same copies shows the same record and the same entry.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from novacron_core.conflict.merge import (
    MISSING,
    Contest,
    Head,
    Outcome,
    merge,
    same,
    set_at,
    value_at,
)
from novacron_core.conflict.policy import Policies
from novacron_core.conflict.record import (
    MERGED,
    SCHEMA,
    Copy,
    canon,
    power_of,
    same_json,
    vv_join,
    vv_leq,
)
from novacron_core.conflict.strategies import decider, run

CLOSED_KEPT = 32  # closed conflicts a record carries (the replicas' audit logs keep them all)


def entry_id(kind: str, vm: str, dots: Iterable[str]) -> str:
    h = hashlib.blake2b(f"{kind}\x00{vm}\x00{','.join(sorted(dots))}".encode(), digest_size=8)
    return "c-" + h.hexdigest()


def head_of(c: Copy) -> Head:
    return Head(c.dot, c.region, c.hlc, c.epoch, c.source, c.role)


def heads_of(copies: Iterable[Copy]) -> list[Copy]:
    """The copies no other copy has seen, in dot order."""
    cs = sorted(copies, key=lambda c: c.dot)
    return [
        c for c in cs if not any(o is not c and vv_leq(c.vv, o.vv) and o.vv != c.vv for o in cs)
    ]


@dataclass
class Resolved:
    vm: str
    record: dict[str, Any]  # what the replica shows (schema 2)
    heads: list[Copy]
    entry: dict[str, Any] | None  # the current conflict (several heads), None otherwise
    base: dict[str, Any] | None  # the checkpoint a write on top of this record descends from
    merged: bool = False
    outcomes: list[Outcome] = field(default_factory=list)

    @property
    def vv(self) -> dict[str, int]:
        v = self.record.get("vv")
        return v if isinstance(v, dict) else {}

    @property
    def deleted(self) -> bool:
        return self.record.get("lifecycle") == "deleted"


def snapshot(
    fields: dict[str, Any], vv: dict[str, int], label: str, marks: dict[str, Any] | None = None
) -> dict[str, Any]:
    return {"vv": dict(vv), "fields": fields, "label": label, "marks": dict(marks or {})}


def ancestor(heads: Sequence[Copy]) -> dict[str, Any] | None:
    """The newest snapshot carried by a head that every head descends from."""
    best: dict[str, Any] | None = None
    best_key: tuple[int, str] | None = None
    for h in heads:
        b = h.base
        if not b or not isinstance(b.get("vv"), dict) or not isinstance(b.get("fields"), dict):
            continue
        if not all(vv_leq(b["vv"], o.vv) for o in heads):
            continue
        key = (sum(b["vv"].values()), canon(b["vv"]))
        if best_key is None or key > best_key:
            best, best_key = b, key
    return best


def resolve(
    vm: str, copies: Sequence[Copy], policies: Policies, kind: str = "vm"
) -> Resolved | None:
    live = list(copies)
    if not live:
        return None
    heads = heads_of(live)
    if len(heads) == 1:
        h = heads[0]
        rec = dict(h.record)
        rec["conflict"] = None
        own_base = snapshot(h.fields, h.vv, h.dot, h.marks)
        return Resolved(vm, rec, heads, None, own_base)
    return _merge(vm, heads, live, policies, kind)


def _merge(
    vm: str, heads: list[Copy], copies: list[Copy], policies: Policies, kind: str
) -> Resolved:
    base = ancestor(heads)
    hs = [head_of(h) for h in heads]
    result = merge(
        base["fields"] if base else None,
        [(hd, h.fields) for hd, h in zip(hs, heads, strict=True)],
        decider(policies, kind),
        voters=[(c.region, c.fields) for c in copies],
        keys=MERGED,
        marks=((base or {}).get("marks") or {}, [h.marks for h in heads]),
    )
    fields, outcomes = result.fields, result.outcomes
    outcomes += _semantic(policies, kind, base, heads, hs, fields, result.contributions, copies)
    vv = vv_join(h.vv for h in heads)
    eid = entry_id("concurrent", vm, (h.dot for h in heads))
    marks = _marks(heads, outcomes)
    lifecycle = fields.get("lifecycle", "pending")
    latest = max(heads, key=lambda h: h.hlc)
    siblings = _carried(heads, "siblings")
    pending = _carried(heads, "pending")
    for o in outcomes:
        if o.outcome == "siblings" and o.siblings:
            siblings[o.path] = {"conflict": eid, "vv": vv, "values": o.siblings}
        if o.outcome == "parked":
            parked = pending.setdefault(eid, {"conflict": eid, "vv": vv, "fields": {}})
            parked["fields"][o.path] = {
                "value": _plain(o.value),
                "candidates": o.candidates,
                "base": _plain(o.base),
            }
    entry = _entry(vm, eid, heads, hs, base, outcomes, result.contributions)
    record: dict[str, Any] = {
        "schema": SCHEMA,
        "kind": "vm",
        "id": vm,
        **fields,
        "power": power_of(lifecycle),
        "vv": vv,
        "version": sum(vv.values()),
        "writer": {
            "region": latest.region,
            "hlc": list(max(h.hlc for h in heads)),
            "epoch": max(h.epoch for h in heads),
            "source": "merge",
            "heads": [h.dot for h in heads],
        },
        "history": {"base": None, "closed": closed_union(heads)},
        "siblings": siblings,
        "pending": pending,
        "marks": marks,
        "conflict": eid,
    }
    label = "merge of " + ",".join(h.dot for h in heads)
    return Resolved(vm, record, heads, entry, snapshot(fields, vv, label, marks), True, outcomes)


def _marks(heads: Sequence[Copy], outcomes: Sequence[Outcome]) -> dict[str, Any]:
    """The merged record's operation marks: the deciding head's where a contest decided,
    else the latest (by dot) any head carries."""
    out: dict[str, Any] = {}
    for h in heads:
        for k, v in h.marks.items():
            if isinstance(v, str) and (k not in out or v > out[k]):
                out[k] = v
    by_dot = {h.dot: h for h in heads}
    for o in outcomes:
        if o.path in out and o.source in by_dot:
            m = by_dot[o.source].marks.get(o.path)
            if isinstance(m, str):
                out[o.path] = m
    return dict(sorted(out.items()))


def _plain(v: Any) -> Any:
    return None if v is MISSING else v


def _entry(
    vm: str,
    eid: str,
    heads: list[Copy],
    hs: list[Head],
    base: dict[str, Any] | None,
    outcomes: list[Outcome],
    contributions: dict[str, set[str]],
) -> dict[str, Any]:
    kinds = {"concurrent"}
    for o in outcomes:
        if o.unit in ("lifecycle", "placement", "address"):
            kinds.add(o.unit)
        if o.kind == "semantic":
            kinds.add("semantic")
    if base is None:
        kinds.add("no-ancestor")
    contested = {o.path for o in outcomes}
    merged = {
        p: sorted(ds)
        for p, ds in sorted(contributions.items())
        if p not in contested and len(ds) < len(heads)
    }
    if any(o.outcome == "parked" for o in outcomes):
        status = "manual"
    elif any(o.outcome == "siblings" for o in outcomes):
        status = "siblings"
    else:
        status = "resolved"
    return {
        "id": eid,
        "vm": vm,
        "kinds": sorted(kinds),
        "at_ms": max(h.hlc[0] for h in heads),
        "heads": [h.describe() for h in hs],
        "base": base.get("label") if base else None,
        "fields": [o.to_json() for o in outcomes],
        "merged": merged,
        "status": status,
        "resolution": "auto",
        "closed_by": [],
    }


def _semantic(
    policies: Policies,
    kind: str,
    base: dict[str, Any] | None,
    heads: list[Copy],
    hs: list[Head],
    fields: dict[str, Any],
    contributions: dict[str, set[str]],
    copies: list[Copy],
) -> list[Outcome]:
    """``mustAgree`` groups whose paths came from different heads: decided as one unit."""
    out: list[Outcome] = []
    for group in policies.must_agree:
        contributed = [contributions[p] for p in group if p in contributions]
        if len(contributed) < 2 or set.intersection(*contributed):
            continue  # at most one path changed, or one head gave them all
        paths = [tuple(p.split(".")) for p in group]
        bfields = base["fields"] if base else None

        def unit_value(f: dict[str, Any] | None, ps: list[tuple[str, ...]] = paths) -> Any:
            if f is None:
                return MISSING
            return {".".join(p): _plain(value_at(f, p)) for p in ps}

        values = [(hd, unit_value(h.fields)) for hd, h in zip(hs, heads, strict=True)]
        b = unit_value(bfields)
        changed = [(hd, v) for hd, v in values if not same(v, b)]
        contest = Contest(
            tuple(group[0].split(".")),
            "group",
            b,
            values,
            changed,
            [(c.region, unit_value(c.fields)) for c in copies],
            base is not None,
        )
        chain = tuple(s for s in policies.chain(kind, group[0]) if s not in ("merge", "text"))
        o = run(contest, chain or ("lww",), policies, kind="semantic")
        o.path = "+".join(group)
        chosen = o.value if isinstance(o.value, dict) else {}
        for p in paths:
            v = chosen.get(".".join(p), MISSING)
            set_at(fields, p, MISSING if v is None and value_at(fields, p) is MISSING else v)
        out.append(o)
    return out


def _carried(heads: Sequence[Copy], what: str) -> dict[str, Any]:
    """Siblings or parked conflicts the heads carry, minus those a head cleared: a head that
    has seen one (its vector covers the item's) but no longer carries it resolved it."""
    items: dict[str, Any] = {}
    for h in heads:
        for k, v in (h.siblings if what == "siblings" else h.pending).items():
            if isinstance(v, dict):
                items.setdefault(k, v)
    out: dict[str, Any] = {}
    for k, v in sorted(items.items()):
        vv = v.get("vv") if isinstance(v.get("vv"), dict) else {}
        cleared = any(
            vv_leq(vv, h.vv) and k not in (h.siblings if what == "siblings" else h.pending)
            for h in heads
        )
        if not cleared:
            out[k] = v
    return out


def closed_union(heads: Iterable[Copy]) -> list[dict[str, Any]]:
    """The closed conflicts the heads carry (see :func:`dedupe_closed`)."""
    return dedupe_closed(e for h in heads for e in h.closed)


def dedupe_closed(entries: Iterable[Any]) -> list[dict[str, Any]]:
    """One version per conflict id (the one whose closing write is latest by HLC, so a
    manual resolve or a rollback wins over the decision it replaced), every closer listed;
    the newest CLOSED_KEPT, oldest first."""
    by_id: dict[str, dict[str, Any]] = {}
    closers: dict[str, set[str]] = {}
    for e in entries:
        if not isinstance(e, dict) or not isinstance(e.get("id"), str):
            continue
        ident = e["id"]
        closers.setdefault(ident, set()).update(e.get("closed_by") or [])
        have = by_id.get(ident)
        if have is None or (not same_json(e, have) and _closed_key(e) > _closed_key(have)):
            by_id[ident] = e
    out = [{**e, "closed_by": sorted(closers[i])} for i, e in by_id.items()]
    out.sort(key=lambda e: (list(e.get("closed_at") or []), e["id"]))
    return out[-CLOSED_KEPT:]


def _closed_key(e: dict[str, Any]) -> tuple[Any, ...]:
    at = e.get("closed_at")
    return (at if isinstance(at, list) else [], canon(e.get("fields")))
