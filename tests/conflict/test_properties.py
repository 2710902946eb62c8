"""No silent loss, one outcome: random concurrent writes of 3-5 regions, delivered to
replicas in random orders with duplicates and stale copies, checked against a sequential
reference model of the documented semantics (docs/conflicts.md).

Regions write the way a leader does (on top of what their own replica holds) and exchange
their copies at random moments, so the histories mix causal and concurrent writes, several
rounds of conflicts, closed conflicts, re-addressed double allocations. Then every copy any
region published goes to fresh replicas, each in its own order. Checked:

* every replica shows the same records and the same audit entries (superseded detections
  aside);
* the reference model, computed from the set of copies alone (each region's latest copy,
  the heads, the merge base they carry), agrees on the heads, and on every contested
  field's value for the rules it spells out: lww (greatest HLC), lifecycle precedence,
  earliest lease, counters add, sets three-way;
* no silent loss: every value a head wrote that the record does not show is accounted
  for: in the conflict's entry (overwritten, kept as a sibling, parked, merged), or the
  head had not changed it (the base's value), or a double allocation moved it.
"""

from __future__ import annotations

import json
import os
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from novacron_core.conflict.engine import ConflictEngine
from novacron_core.conflict.merge import MISSING, unit_of, value_at
from novacron_core.conflict.policy import Policies, parse
from novacron_core.conflict.record import PRECEDENCE, canon, parse_copy, vv_leq
from novacron_core.conflict.writes import (
    Create,
    Patch,
    Place,
    Power,
    Prepared,
    Readdress,
    Reboot,
    SetSpec,
)
from tests.conflict.harness import POOLS, REGIONS, Region

EXAMPLES = int(os.environ.get("NOVACRON_CONFLICT_EXAMPLES", "150"))
SPEC = {"cpus": 2, "memory_mib": 2048, "image": "debian-12"}
MULTI = {"novacron.io/writes": "multi"}
POLICIES = [
    {},
    {"default": "lww"},
    {"rules": [{"field": "description", "strategy": "text"}]},
    {"rules": [{"field": "labels.*", "strategy": "siblings"}]},
    {"rules": [{"field": "spec.*", "strategies": ["vote", "manual"]}]},
    {
        "rules": [{"field": "labels.*", "strategies": ["priority", "rollback"]}],
        "priority": {"regions": ["r3", "r1"]},
    },
    {
        "mustAgree": [["spec.cpus", "spec.memory_mib"]],
        "rules": [{"field": "spec.*", "strategy": "lww"}],
    },
]


def _op(data: st.DataObject) -> Any:
    kind = data.draw(
        st.sampled_from(["power", "reboot", "readdress", "label", "text", "spec", "place"])
    )
    if kind == "power":
        return Power(data.draw(st.sampled_from(["on", "off"])))
    if kind == "reboot":
        return Reboot()
    if kind == "readdress":
        return Readdress()
    if kind == "label":
        return Patch(
            labels={
                data.draw(st.sampled_from(["team", "env"])): data.draw(
                    st.sampled_from(["a", "b", "c"])
                )
            }
        )
    if kind == "text":
        return Patch(
            description=data.draw(st.sampled_from(["web", "web server", "the web", "web!"]))
        )
    if kind == "spec":
        return SetSpec(
            {
                data.draw(st.sampled_from(["cpus", "memory_mib"])): data.draw(st.integers(1, 4))
                * 1024
                // 1024
            }
        )
    return Place(data.draw(st.sampled_from(["h1", "h2", "h3"])))


def _history(data: st.DataObject) -> tuple[list[Region], Policies, list[tuple[str, bytes]]]:
    n = data.draw(st.integers(3, 5), label="regions")
    raw = data.draw(st.sampled_from(POLICIES), label="policies")
    policies = parse({"writes": "multi", **raw})
    names = REGIONS[:n]
    pools = {r: POOLS[r] for r in names}
    rs = [Region(r, ConflictEngine(r, None, policies, pools)) for r in names]
    wall = 1000
    out = rs[0].write("web", Create("web", "web", SPEC, "on", MULTI, description="web"), wall)
    assert isinstance(out, Prepared)
    for r in rs[1:]:
        r.receive(*rs[0].published[-1])
    for _ in range(data.draw(st.integers(4, 24), label="steps")):
        wall += data.draw(st.integers(0, 3))  # equal wall clocks happen: the HLC orders them
        if data.draw(st.booleans()):
            src, dst = data.draw(st.sampled_from(rs)), data.draw(st.sampled_from(rs))
            if src is not dst and src.published:
                k = data.draw(st.integers(1, len(src.published)))
                for key, raw_copy in src.published[:k]:
                    dst.receive(key, raw_copy)
            continue
        r = data.draw(st.sampled_from(rs))
        vm = data.draw(st.sampled_from(["web", "web", "db"]))
        if vm == "db" and r.engine.view("db") is None:
            r.write("db", Create("db", "db", SPEC, "on", MULTI), wall)
        else:
            r.write(vm, _op(data), wall)
    published = [c for r in rs for c in r.published]
    return rs, policies, published


def _replica(
    rs: list[Region], policies: Policies, order: list[tuple[str, bytes]]
) -> ConflictEngine:
    eng = ConflictEngine("obs", None, policies, {r.name: POOLS[r.name] for r in rs})
    for i, (key, raw) in enumerate(order):
        eng.on_copy(key, raw)
        if i % 3 == 0:
            eng.settle(10_000 + i)  # settle at random points: intermediate states vary
    eng.settle(99_999)
    return eng


# ------------------------------------------------------------------ the reference model


def _latest_copies(published: list[tuple[str, bytes]], vm: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, raw in published:
        if not key.startswith(f"vm/{vm}@"):
            continue
        c = parse_copy(raw, key.rsplit("@", 1)[1])
        assert c is not None
        if c.region not in out or c.n > out[c.region].n:
            out[c.region] = c
    return out


def _heads(copies: dict[str, Any]) -> list[Any]:
    cs = list(copies.values())
    return sorted(
        (c for c in cs if not any(o.vv != c.vv and vv_leq(c.vv, o.vv) for o in cs)),
        key=lambda c: c.dot,
    )


def _base(heads: list[Any]) -> dict[str, Any] | None:
    bases = [h.base for h in heads if h.base and all(vv_leq(h.base["vv"], o.vv) for o in heads)]
    if not bases:
        return None
    return max(bases, key=lambda b: (sum(b["vv"].values()), canon(b["vv"])))


def _leaves(fields: Any, path: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
    """path -> value, down to the schema's units (keyed lists by key)."""
    unit = unit_of(path, fields) if path else "map"
    if unit == "map" and isinstance(fields, dict):
        out: dict[tuple[str, ...], Any] = {}
        for k, v in fields.items():
            out |= _leaves(v, (*path, k))
        return out
    if unit.startswith("keyed:") and isinstance(fields, list):
        key = unit[6:]
        out = {}
        for item in fields:
            if isinstance(item, dict) and key in item:
                out |= _leaves({k: v for k, v in item.items() if k != key}, (*path, item[key]))
        return out
    return {path: fields}


def _check_against_model(eng: ConflictEngine, published: list[tuple[str, bytes]]) -> None:
    for vm in ("web", "db"):
        copies = _latest_copies(published, vm)
        if not copies:
            assert eng.view(vm) is None
            continue
        heads = _heads(copies)
        view = eng.view(vm)
        assert view is not None
        if len(heads) == 1:
            h = heads[0].record
            moved = {k: v for k, v in view.items() if k not in ("conflict", "nics")}
            assert moved == {k: v for k, v in h.items() if k != "nics"}
            continue
        entry = next(e for e in eng.current().values() if e["id"] == view["conflict"])
        assert [x["dot"] for x in entry["heads"]] == [h.dot for h in heads]
        base = _base(heads)
        assert entry["base"] == (base["label"] if base else None)
        _check_fields(vm, view, entry, heads, base, eng)


def _check_fields(
    vm: str, view: dict[str, Any], entry: dict[str, Any], heads: list[Any], base: Any, eng: Any
) -> None:
    shown = _leaves({k: view[k] for k in view if k in heads[0].fields})
    b = _leaves(base["fields"]) if base else {}
    decided = {tuple(f["path"].split(".")): f for f in entry["fields"]}
    groups = [f for f in entry["fields"] if "+" in f["path"]]
    moved = {
        (vm, f["path"])
        for e in eng.current().values()
        if "double-allocation" in e["kinds"]
        for f in e["fields"]
    }
    for h in heads:
        mine = _leaves(h.fields)
        for path, value in mine.items():
            got = shown.get(path, MISSING)
            if (got is not MISSING and canon(got) == canon(value)) or (
                vm,
                ".".join(path),
            ) in moved:
                continue
            if path[0] == "tags":
                continue  # a set: merged three-way below
            f = decided.get(path) or next(
                (decided[p] for p in decided if path[: len(p)] == p), None
            )
            if f is None and any(".".join(path) in g["path"].split("+") for g in groups):
                continue  # a mustAgree group decided as a unit (checked below)
            if f is None:
                # not contested: this head did not change it, so it is the base's value
                assert base is not None, (vm, path, value, got)
                assert (
                    canon(b.get(path, MISSING)) == canon(value) or b.get(path, MISSING) is MISSING
                ), (
                    vm,
                    path,
                    value,
                    got,
                    b.get(path),
                )
                continue
            accounted = (
                f["outcome"] in ("merged", "siblings", "parked")
                or any(canon(o["value"]) == canon(value) for o in f["overwritten"])
                or canon(value) == canon(f.get("base"))
            )
            assert accounted, (vm, path, value, f)
    for f in entry["fields"]:
        if "+" not in f["path"]:
            _check_candidates(f, heads)
        _check_rule(f, heads)


def _check_candidates(f: dict[str, Any], heads: list[Any]) -> None:
    """A contest's candidates are the heads' own values, and every head that changed the
    unit from the base is one of them (the model's contested set, not the engine's)."""
    path = tuple(f["path"].split("."))
    by_dot = {c["from"]: c["value"] for c in f["candidates"]}
    for h in heads:
        mine = _leaves(h.fields).get(path, MISSING)
        if mine is MISSING:
            mine = value_at(h.fields, list(path))
        plain = None if mine is MISSING else mine
        if h.dot in by_dot:
            assert canon(by_dot[h.dot]) == canon(plain), (f["path"], h.dot, plain, by_dot[h.dot])
        elif path[0] != "tags":
            assert mine is MISSING or canon(plain) == canon(f.get("base")), (
                f["path"],
                h.dot,
                plain,
                f.get("base"),
            )


def _check_rule(f: dict[str, Any], heads: list[Any]) -> None:
    """The rules the model spells out, from the contest's own candidates."""
    by_dot = {h.dot: h for h in heads}
    cands = [(by_dot[c["from"]], c["value"]) for c in f["candidates"]]
    if f["strategy"] in ("lww", "siblings"):  # siblings show the lww value meanwhile
        want = max(cands, key=lambda hv: (hv[0].hlc, canon(hv[1])))
        assert canon(f["value"]) == canon(want[1]), f
    elif f["strategy"] == "merge" and f["unit"] == "lifecycle":
        want = min(cands, key=lambda hv: (PRECEDENCE.index(hv[1]), hv[0].dot))
        assert f["value"] == want[1], f
    elif f["strategy"] == "merge" and f["unit"] == "address":
        want = min(cands, key=lambda hv: (tuple(hv[1]["lease"]), hv[0].dot))
        assert f["value"] == want[1], f
    elif f["strategy"] == "merge" and f["unit"] == "counter":
        b = f["base"] or 0
        assert f["value"] == b + sum(v - b for _, v in cands), f


# ------------------------------------------------------------------ the property


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.data())
def test_every_order_of_delivery_gives_one_record_and_one_audit_and_loses_nothing(
    data: st.DataObject,
) -> None:
    rs, policies, published = _history(data)
    replicas = []
    for i in range(3):
        order = data.draw(st.permutations(published), label=f"order {i}")
        dups = data.draw(st.lists(st.sampled_from(published), max_size=6), label=f"dups {i}")
        at = data.draw(st.integers(0, len(order)))
        replicas.append(_replica(rs, policies, [*order[:at], *dups, *order[at:]]))
    views = {json.dumps(r.records(include_deleted=True), sort_keys=True) for r in replicas}
    assert len(views) == 1
    audits = {json.dumps(r.log.live(), sort_keys=True) for r in replicas}
    assert len(audits) == 1
    current = {json.dumps(r.current(), sort_keys=True) for r in replicas}
    assert len(current) == 1
    assert all(r.counts()["held"] == 0 for r in replicas)  # everything arrived in the end
    _check_against_model(replicas[0], published)
    # every conflict a region closed by writing on top reached every replica's audit
    closed = {e["id"] for _, raw in published for e in json.loads(raw)["history"]["closed"]}
    for r in replicas:
        assert closed <= set(r.log.state)
