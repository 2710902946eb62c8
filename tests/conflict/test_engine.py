"""The conflict engine on its own: records, lifecycle, detection, the eight strategies, the
VM rules, policies, the audit trail (regions write through the same prepare a leader
runs; copies reach replicas as the federation delivers them)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from novacron_core.conflict.audit import MemoryAudit
from novacron_core.conflict.engine import ConflictEngine, copy_key
from novacron_core.conflict.merge import MISSING, Head, merge
from novacron_core.conflict.policy import Policies, PolicyError, parse
from novacron_core.conflict.record import parse_copy, upgrade
from novacron_core.conflict.strategies import decider
from novacron_core.conflict.writes import (
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
from tests.conflict.harness import POOLS, Region, deliver, regions, replica

SPEC = {"cpus": 2, "memory_mib": 2048, "image": "debian-12"}
MULTI = {"novacron.io/writes": "multi"}


def _create(r: Region, vm: str = "web", power: str = "on", **kw: Any) -> dict[str, Any]:
    out = r.write(vm, Create(vm, vm, SPEC, power, {**MULTI, **kw.pop("labels", {})}, **kw), 1000)
    assert isinstance(out, Prepared), out
    return out.record


def _everyone(rs: list[Region]) -> None:
    for a in rs:
        for b in rs:
            if a is not b:
                deliver(a, b)


def _partitioned(policies: dict[str, Any] | None = None, n: int = 2) -> list[Region]:
    rs = regions(n, parse(policies or {}))
    _create(rs[0])
    _everyone(rs)
    return rs


def _entry(r: Region) -> dict[str, Any]:
    (e,) = [e for e in r.engine.current().values() if not e.get("closed_by")]
    return e


def _field(e: dict[str, Any], path: str) -> dict[str, Any]:
    return next(f for f in e["fields"] if f["path"] == path)


# ------------------------------------------------------------------ the record


def test_a_created_vm_has_a_lifecycle_a_host_an_address_from_its_pool_and_a_causal_version() -> (
    None
):
    (a,) = regions(1)
    rec = _create(a, power="on")
    assert (rec["lifecycle"], rec["power"], rec["vv"], rec["version"]) == (
        "running",
        "on",
        {"r1": 1},
        1,
    )
    assert rec["placement"]["host"]
    assert rec["placement"]["placed_at"] == [1000, 0, "r1"]
    (nic,) = rec["nics"]
    assert nic["address"] == {"ip": "10.16.0.10", "pool": "r1", "lease": [1000, 0, "r1"]}
    second = a.write("db", Create("db", "db", SPEC), 1001)
    assert isinstance(second, Prepared)
    assert second.record["nics"][0]["address"]["ip"] == "10.16.0.11"  # the next free one
    assert second.record["lifecycle"] == "pending"


def test_illegal_transitions_are_refused_naming_the_current_state() -> None:
    (a,) = regions(1)
    _create(a, power="off")  # pending
    out = a.write("web", Reboot())
    assert isinstance(out, Refusal)
    assert (out.status, out.current) == (409, "pending")
    assert "pending" in out.detail
    out = a.write("web", Transition("stopping"))
    assert isinstance(out, Refusal)
    assert out.status == 409
    assert isinstance(a.write("web", Power("on")), Prepared)  # pending -> running (a path)
    assert isinstance(a.write("web", Power("on")), Unchanged)
    assert isinstance(a.write("web", Transition("stopping")), Prepared)
    out = a.write("web", Power("on"))
    assert isinstance(out, Refusal)
    assert out.current == "stopping"
    assert isinstance(a.write("web", Power("off")), Prepared)
    assert isinstance(a.write("web", Delete()), Prepared)
    out = a.write("web", Power("on"))
    assert isinstance(out, Refusal)
    assert out.status == 404
    again = a.write("web", Create("web", "web", SPEC))  # the id is free again
    assert isinstance(again, Prepared)
    assert again.record["vv"]["r1"] == 6


def test_a_schema_1_record_is_read_and_upgraded_the_same_way_everywhere() -> None:
    old = {"id": "web", "name": "web", "home_region": "r1", "power": "on", "version": 4}
    spec = {"cpus": 1, "memory_mib": 512, "image": "alpine", "disk_gib": 10}
    up = upgrade({**old, "spec": spec})
    assert (up["lifecycle"], up["vv"], up["version"], up["spec"]) == ("running", {"r1": 4}, 4, spec)
    assert upgrade(old) == upgrade(dict(old))
    c = parse_copy(json.dumps(old).encode(), "r1")
    assert c is not None
    assert (c.dot, c.source) == ("r1:4", "upgrade")
    (a,) = regions(1)
    a.kv["web"] = json.dumps(old).encode()
    out = a.write("web", Power("off"))
    assert isinstance(out, Prepared)
    assert out.record["vv"] == {"r1": 5}
    assert out.expected == a.kv["web"] or out.record["lifecycle"] == "stopped"


def test_writes_home_answers_421_naming_the_home_region() -> None:
    a, b = regions(2)
    out = a.write("web", Create("web", "web", SPEC, "on"), 1000)
    assert isinstance(out, Prepared)
    deliver(a, b)
    refused = b.write("web", Power("off"))
    assert isinstance(refused, Refusal)
    assert (refused.status, refused.home) == (421, "r1")
    assert isinstance(a.write("web", Patch(labels={"novacron.io/writes": "multi"})), Prepared)
    deliver(a, b)
    assert isinstance(b.write("web", Power("off")), Prepared)  # labelled multi: any region


# ------------------------------------------------------------------ detection


def test_sequential_writes_in_two_regions_are_no_conflict() -> None:
    a, b = _partitioned()
    assert isinstance(b.write("web", Reboot(), 2000), Prepared)
    deliver(b, a)
    assert isinstance(a.write("web", Power("off"), 3000), Prepared)
    deliver(a, b)
    assert a.engine.current() == {} == b.engine.current()
    assert a.engine.view("web") == b.engine.view("web")
    assert b.engine.view("web")["stats"]["restarts"] == 1  # type: ignore[index]


def test_concurrent_writes_are_merged_and_every_replica_shows_the_same_record_and_entry() -> None:
    a, b, c = regions(3, parse({"rules": [{"field": "description", "strategy": "text"}]}))
    _create(a, description="a web server")
    _everyone([a, b, c])
    a.write("web", Patch(description="a fast web server", labels={"team": "blue"}), 2000)
    a.write("web", SetSpec({"cpus": 4}), 2001)
    b.write("web", Patch(description="a web server in Paris"), 2100)
    b.write("web", Reboot(), 2101)
    c.write("web", Reboot(), 2200)
    _everyone([a, b, c])
    views = {json.dumps(r.engine.view("web"), sort_keys=True) for r in (a, b, c)}
    assert len(views) == 1
    v = a.engine.view("web")
    assert v is not None
    assert v["description"] == "a fast web server in Paris"  # both edits (RGA)
    assert (v["spec"]["cpus"], v["labels"]["team"]) == (4, "blue")  # one side's changes kept
    assert v["stats"]["restarts"] == 2  # counters add
    assert v["vv"] == {"r1": 3, "r2": 2, "r3": 1}
    e = _entry(a)
    assert e == _entry(b) == _entry(c)
    assert [h["dot"] for h in e["heads"]] == ["r1:3", "r2:2", "r3:1"]
    assert _field(e, "description")["strategy"] == "text"
    assert _field(e, "stats.restarts")["value"] == 2
    assert e["merged"]["spec"] == ["r1:3"]


def test_a_write_that_saw_what_another_had_not_is_held_until_that_arrives() -> None:
    a, b = _partitioned()
    obs = replica(2)
    first = a.write("web", Reboot(), 2000)
    deliver(a, b)
    second = b.write("web", Reboot(), 2100)  # has seen r1:2
    assert isinstance(first, Prepared)
    assert isinstance(second, Prepared)
    obs.on_copy(copy_key("web", "r1"), a.published[0][1])  # the creation only
    obs.on_copy(copy_key("web", "r2"), second.value)
    obs.settle(3000)
    assert obs.counts()["held"] == 1  # r2:1 depends on r1:2, not here yet
    assert obs.view("web")["stats"]["restarts"] == 0  # type: ignore[index]
    obs.on_copy(copy_key("web", "r1"), first.value)
    obs.settle(3001)
    assert obs.counts()["held"] == 0
    assert obs.counts()["held_total"] == 1
    assert obs.view("web") == b.engine.view("web")
    assert obs.current() == {}  # causal, not concurrent


def test_a_copy_written_under_a_stale_fencing_epoch_is_parked_not_applied() -> None:
    a, b = _partitioned()
    b.write("web", Power("off"), 2000, epoch=0)
    obs = replica(2)
    obs.configure(parse({}), fencing={"r2": 1})  # r2 moved on to epoch 1 (the DR issue)
    for key, raw in [*a.published, *b.published]:
        obs.on_copy(key, raw)
    obs.settle(3000)
    assert obs.view("web")["lifecycle"] == "running"  # type: ignore[index]
    (e,) = obs.current().values()
    assert e["kinds"] == ["stale-epoch"]
    assert e["status"] == "manual"
    assert _field(e, "lifecycle")["candidates"] == [{"value": "stopped", "from": "r2:1"}]
    assert obs.counts()["stale_epoch"] == 1


# ------------------------------------------------------------------ the VM rules


def test_concurrent_lifecycle_operations_resolve_by_precedence_on_every_replica() -> None:
    a, b = _partitioned()
    a.write("web", Power("off"), 2000)
    b.write("web", Reboot(), 2500)  # later, but a stop beats a start
    _everyone([a, b])
    assert a.engine.view("web")["lifecycle"] == "stopped"  # type: ignore[index]
    assert b.engine.view("web")["power"] == "off"  # type: ignore[index]
    f = _field(_entry(a), "lifecycle")
    assert (f["strategy"], f["from"]) == ("merge", "r1:2")
    assert "precedence" in f["why"]
    assert a.engine.view("web")["stats"]["restarts"] == 1  # type: ignore[index]


def test_one_vm_readdressed_on_both_sides_keeps_the_earlier_lease() -> None:
    a, b = _partitioned()
    a.write("web", Readdress(), 2000)
    b.write("web", Readdress(), 1900)
    _everyone([a, b])
    e = _entry(a)
    f = _field(e, "nics.eth0.address")
    assert f["from"] == "r2:1"
    assert "earlier lease" in f["why"]
    assert f["overwritten"][0]["from"] == "r1:2"
    assert a.engine.view("web")["nics"][0]["address"]["lease"][2] == "r2"  # type: ignore[index]


def test_one_address_leased_to_two_vms_keeps_the_earlier_lease_and_readdresses_the_other() -> None:
    a, b = regions(2, parse({"writes": "multi"}))
    _create(a, "web")
    _everyone([a, b])
    # partitioned: b re-addresses web to the next free address of r1's pool ...
    out_b = b.write("web", Readdress(), 2000)
    assert isinstance(out_b, Prepared)
    ip = out_b.record["nics"][0]["address"]["ip"]
    # ... which a gives to a new VM meanwhile, later
    out_a = a.write("db", Create("db", "db", SPEC, "on", MULTI), 2100)
    assert isinstance(out_a, Prepared)
    assert out_a.record["nics"][0]["address"]["ip"] == ip
    _everyone([a, b])
    for r in (a, b):
        assert r.engine.view("web")["nics"][0]["address"]["ip"] == ip  # type: ignore[index]
        db = r.engine.view("db")["nics"][0]["address"]  # type: ignore[index]
        assert db["ip"] != ip
        assert db["readdressed_from"] == ip
    (dup,) = [e for e in a.engine.current().values() if "double-allocation" in e["kinds"]]
    assert dup["vm"] == "db"
    assert dup["vms"] == ["db", "web"]
    assert dup == next(e for e in b.engine.current().values() if e["id"] == dup["id"])
    # db's next write carries the new address: the double allocation is closed
    assert isinstance(a.write("db", Patch(labels={"tier": "data"}), 3000), Prepared)
    _everyone([a, b])
    closed = b.engine.log.get(dup["id"])
    assert closed is not None
    assert closed["closed_by"] == ["r1:2"]


def test_a_vm_placed_on_two_hosts_keeps_the_earlier_placement() -> None:
    a, b = _partitioned()
    a.write("web", Place("h-a"), 2100)
    b.write("web", Place("h-b"), 2000)
    _everyone([a, b])
    assert a.engine.view("web")["placement"]["host"] == "h-b"  # type: ignore[index]
    assert "placement" in _entry(a)["kinds"]


# ------------------------------------------------------------------ strategies


def _contest(policies: dict[str, Any], *values: Any, base: Any = "base") -> dict[str, Any]:
    heads = [
        Head(f"r{i + 1}:2", f"r{i + 1}", (1000 + i, 0, f"r{i + 1}")) for i in range(len(values))
    ]
    out = merge(
        {"x": base} if base is not MISSING else None,
        [(h, {"x": v}) for h, v in zip(heads, values, strict=True)],
        decider(parse(policies)),
        voters=[(h.region, {"x": v}) for h, v in zip(heads, values, strict=True)],
    )
    (o,) = out.outcomes
    return {"value": out.fields.get("x", MISSING), **o.to_json()}


def _rule(*chain: str, **more: Any) -> dict[str, Any]:
    return {"rules": [{"field": "x", "strategies": list(chain)}], **more}


def test_lww_takes_the_latest_hlc_and_the_region_breaks_ties() -> None:
    assert _contest(_rule("lww"), "a", "b")["value"] == "b"
    heads = [Head("r2:2", "r2", (5, 0, "r2")), Head("r1:2", "r1", (5, 0, "r1"))]
    out = merge(
        {"x": 0}, [(heads[0], {"x": 2}), (heads[1], {"x": 1})], decider(parse(_rule("lww")))
    )
    assert out.fields["x"] == 2  # same wall and logical: r2 > r1


def test_siblings_keep_every_value() -> None:
    o = _contest(_rule("siblings"), "a", "b")
    assert o["outcome"] == "siblings"
    assert [s["value"] for s in o["siblings"]] == ["a", "b"]
    assert o["overwritten"] == []


def test_rollback_returns_to_the_ancestor_and_declines_without_one() -> None:
    assert _contest(_rule("rollback"), "a", "b")["value"] == "base"
    o = _contest(_rule("rollback"), "a", "b", base=MISSING)
    assert (o["strategy"], o["declined"]) == ("lww", ["rollback"])


def test_manual_parks_with_the_ancestor_value_meanwhile() -> None:
    o = _contest(_rule("manual"), "a", "b")
    assert (o["outcome"], o["value"]) == ("parked", "base")
    assert [c["value"] for c in o["candidates"]] == ["a", "b"]


def test_priority_ranks_regions_and_declines_on_a_tie() -> None:
    o = _contest(_rule("priority", priority={"regions": ["r2", "r1"]}), "a", "b")
    assert (o["value"], o["strategy"]) == ("b", "priority")
    o = _contest(_rule("priority", "manual", priority={"regions": ["r9"]}), "a", "b")
    assert o["strategy"] == "manual"
    assert o["declined"] == ["priority"]


def test_vote_takes_a_strict_majority_of_the_regions_copies() -> None:
    assert _contest(_rule("vote"), "a", "b", "b")["value"] == "b"
    o = _contest(_rule("vote", "siblings"), "a", "b", "c")
    assert o["strategy"] == "siblings"
    assert o["declined"] == ["vote"]


def test_merge_is_type_aware_and_declines_on_scalars() -> None:
    o = _contest(_rule("merge", "manual"), 3, 4, base=2)
    assert o["strategy"] == "manual"
    assert o["declined"] == ["merge"]
    o = _contest(_rule("merge"), ["a", "b", "x"], ["a", "y", "b"], base=["a", "b"])
    assert o["value"] == ["a", "y", "b", "x"]  # list edits by RGA


def test_text_merges_both_edits_and_declines_on_non_strings() -> None:
    o = _contest(_rule("text"), "hello big world", "hello world!", base="hello world")
    assert o["value"] == "hello big world!"
    assert _contest(_rule("text", "rollback"), 1, 2, base=0)["strategy"] == "rollback"


def test_three_way_merge_recurses_maps_merges_sets_and_keyed_lists() -> None:
    h1, h2 = Head("r1:2", "r1", (1, 0, "r1")), Head("r2:2", "r2", (2, 0, "r2"))
    base = {
        "labels": {"a": "1", "b": "2"},
        "tags": ["x", "y"],
        "nics": [{"name": "eth0", "mtu": 1500}],
    }
    one = {"labels": {"a": "1", "b": "3"}, "tags": ["x"], "nics": [{"name": "eth0", "mtu": 9000}]}
    two = {
        "labels": {"a": "1", "b": "2", "c": "4"},
        "tags": ["x", "y", "z"],
        "nics": [{"name": "eth0", "mtu": 1500}, {"name": "eth1", "mtu": 1500}],
    }
    out = merge(base, [(h1, one), (h2, two)], decider(Policies()))
    assert out.outcomes == []  # nothing both changed differently
    assert out.fields == {
        "labels": {"a": "1", "b": "3", "c": "4"},
        "tags": ["x", "z"],
        "nics": [{"name": "eth0", "mtu": 9000}, {"name": "eth1", "mtu": 1500}],
    }


def test_must_agree_groups_are_decided_as_a_unit() -> None:
    a, b = _partitioned({"mustAgree": [["spec.cpus", "spec.memory_mib"]]})
    a.write("web", SetSpec({"cpus": 8}), 2000)
    b.write("web", SetSpec({"memory_mib": 65536}), 2100)
    _everyone([a, b])
    v = a.engine.view("web")
    assert v is not None
    assert (v["spec"]["cpus"], v["spec"]["memory_mib"]) == (2, 65536)
    e = _entry(a)
    assert "semantic" in e["kinds"]
    assert _field(e, "spec.cpus+spec.memory_mib")["from"] == "r2:1"


# ------------------------------------------------------------------ policies


def test_an_invalid_policy_is_refused_naming_the_path() -> None:
    with pytest.raises(PolicyError, match=r"conflictPolicies\.rules\.0\.strategy"):
        parse({"rules": [{"field": "spec.*", "strategy": "coinflip"}]})
    with pytest.raises(PolicyError, match=r"conflictPolicies\.rules\.0\.field"):
        parse({"rules": [{"field": "spec..x", "strategy": "lww"}]})
    with pytest.raises(PolicyError, match=r"priority"):
        parse({"default": "priority"})
    with pytest.raises(PolicyError, match=r"conflictPolicies\.writes"):
        parse({"writes": "everywhere"})


def test_the_crd_shape_is_accepted_and_rules_match_by_kind_and_glob_in_order() -> None:
    p = parse(
        {
            "default": "merge",
            "rules": [
                {"field": "spec.*", "strategy": "lww"},
                {"field": "spec.cpus", "strategy": "manual"},
                {"field": "labels.*", "kind": "volume", "strategy": "vote"},
            ],
        }
    )
    assert p.chain("vm", "spec.cpus") == ("lww",)  # the first match wins
    assert p.chain("vm", "labels.team") == ("merge", "lww")  # default, then the fallback
    assert p.chain("volume", "labels.team") == ("vote", "lww")
    assert p.chain("vm", "lifecycle") == ("merge", "lww")  # the built-in VM rule


def test_changed_policies_apply_without_a_restart_and_are_logged() -> None:
    a, b = _partitioned()
    a.write("web", Patch(labels={"team": "red"}), 2000)
    b.write("web", Patch(labels={"team": "blue"}), 2100)
    _everyone([a, b])
    assert a.engine.view("web")["labels"]["team"] == "blue"  # type: ignore[index]
    a.engine.configure(parse({"rules": [{"field": "labels.team", "strategy": "manual"}]}))
    a.engine.settle(5000)
    v = a.engine.view("web")
    assert v is not None
    assert "team" not in v["labels"]
    e = _entry(a)
    assert e["status"] == "manual"
    assert [ev["event"] for ev in a.engine.log.events if ev["id"] == e["id"]][-1] == "updated"


# ------------------------------------------------------------------ manual decisions


def test_a_parked_conflict_is_resolved_by_hand_and_every_region_learns_it() -> None:
    a, b = _partitioned({"rules": [{"field": "labels.team", "strategy": "manual"}]})
    a.write("web", Patch(labels={"team": "red"}), 2000)
    b.write("web", Patch(labels={"team": "blue"}), 2100)
    _everyone([a, b])
    e = _entry(a)
    assert a.engine.counts()["manual_pending"] == 1
    out = b.write("web", Resolve(e["id"], pick="r1:2"), 3000, who="alice")
    assert isinstance(out, Prepared), out
    _everyone([a, b])
    for r in (a, b):
        assert r.engine.view("web")["labels"]["team"] == "red"  # type: ignore[index]
        done = r.engine.log.get(e["id"])
        assert done is not None
        assert (done["status"], done["resolution"], done["resolved_by"]) == (
            "resolved",
            "manual",
            "alice",
        )
        assert r.engine.counts()["manual_pending"] == 0
    bad = a.write("web", Resolve(e["id"], pick="r9:9"), 4000)
    assert isinstance(bad, Refusal)
    assert bad.status == 422
    assert bad.field == "pick"


def test_a_resolution_is_rolled_back_and_parked_then_decided_again() -> None:
    a, b = _partitioned()
    a.write("web", Patch(labels={"team": "red"}), 2000)
    b.write("web", Patch(labels={"team": "blue"}), 2100)
    _everyone([a, b])
    e = _entry(a)  # lww: blue
    out = a.write("web", Rollback(e["id"]), 3000)
    assert isinstance(out, Prepared), out
    _everyone([a, b])
    v = b.engine.view("web")
    assert v is not None
    assert "team" not in v["labels"]
    rolled = b.engine.log.get(e["id"])
    assert rolled is not None
    assert (rolled["status"], rolled["resolution"]) == (
        "manual",
        "rolled-back",
    )
    out = b.write("web", Resolve(e["id"], values={"labels.team": "green"}), 4000)
    assert isinstance(out, Prepared), out
    _everyone([a, b])
    assert a.engine.view("web")["labels"]["team"] == "green"  # type: ignore[index]
    assert a.engine.log.get(e["id"])["status"] == "resolved"  # type: ignore[index]


def test_siblings_stay_until_a_write_sets_the_field() -> None:
    a, b = _partitioned({"rules": [{"field": "labels.team", "strategy": "siblings"}]})
    a.write("web", Patch(labels={"team": "red"}), 2000)
    b.write("web", Patch(labels={"team": "blue"}), 2100)
    _everyone([a, b])
    sib = a.engine.view("web")["siblings"]["labels.team"]  # type: ignore[index]
    assert [s["value"] for s in sib["values"]] == ["red", "blue"]
    a.write("web", Reboot(), 3000)  # unrelated: the siblings travel on
    deliver(a, b)
    assert "labels.team" in b.engine.view("web")["siblings"]  # type: ignore[index]
    a.write("web", Patch(labels={"team": "red"}), 3100)
    deliver(a, b)
    assert b.engine.view("web")["siblings"] == {}  # type: ignore[index]


# ------------------------------------------------------------------ the audit trail


def test_the_audit_trail_is_persisted_and_a_restart_logs_nothing_twice() -> None:
    durable = MemoryAudit()
    a, b = _partitioned()
    a.write("web", Power("off"), 2000)
    b.write("web", Reboot(), 2100)
    eng = ConflictEngine("obs", durable, Policies(), {k: POOLS[k] for k in ("r1", "r2")})
    for key, raw in [*a.published, *b.published]:
        eng.on_copy(key, raw)
    durable.apply(eng.settle(5000))
    assert [ev["event"] for ev in durable.events] == ["detected"]
    again = ConflictEngine("obs", durable, Policies(), {k: POOLS[k] for k in ("r1", "r2")})
    for key, raw in [*a.published, *b.published]:
        again.on_copy(key, raw)
    assert again.settle(6000) == []  # what the log holds already is not logged again
    assert again.log.query(vm="web") == eng.log.query(vm="web")
    assert again.log.query(vm="other") == []
    assert again.log.query(since_ms=2101) == []
    assert len(again.log.query(until_ms=2100)) == 1
