"""Regressions of issue 14: replicas that agreed on a wrong value. Each test failed before its fix.

1. a PN-Counter nested in an OR-Map counted every replica's increments under one entry;
2. a re-created OR-Map key reused nested dots its removed incarnation had spent;
3. a remove issued after an OR-Set GC missed dots that peers holding the pre-GC state kept;
4. ``1``, ``True`` and ``1.0`` collapsed into one set element (and one map key) in memory.
"""

from __future__ import annotations

from novacron_core.clocks import VersionVector
from novacron_core.sync.crdt import (
    GCounter,
    GSet,
    MVRegister,
    ORMap,
    ORSet,
    PNCounter,
    TwoPSet,
    decode_crdt,
    encode_crdt,
)

# ---------------------------------------------------------------- 1: nested PN-Counter


def test_pn_counter_in_an_or_map_counts_concurrent_increments_of_every_replica() -> None:
    a, b = ORMap("a"), ORMap("b")
    da = a.update("k", PNCounter, lambda c: c.increment(5))
    db = b.update("k", PNCounter, lambda c: c.increment(1))
    a.merge(db)
    b.merge(da)
    assert a.value() == b.value() == {"k": 6}
    da = a.update("k", PNCounter, lambda c: c.decrement(2))
    db = b.update("k", PNCounter, lambda c: c.decrement(3))
    a.merge(db)
    b.merge(da)
    assert a.value() == b.value() == {"k": 1}


# ---------------------------------------------------------------- 2: key re-creation


def test_or_map_key_removed_and_recreated_keeps_concurrent_writes_of_an_or_set() -> None:
    """A writes x under k; B sees it; A removes k and writes y under a fresh k while B
    concurrently writes z. B's write carries k as B saw it (with x), so all three survive."""
    a, b = ORMap("a"), ORMap("b")
    b.merge(a.update("k", ORSet, lambda s: s.add("x")))
    removed = a.remove("k")
    recreated = a.update("k", ORSet, lambda s: s.add("y"))
    concurrent = b.update("k", ORSet, lambda s: s.add("z"))
    a.merge(concurrent)
    b.merge(removed)
    b.merge(recreated)
    assert a.value() == b.value() == {"k": frozenset({"x", "y", "z"})}


def test_or_map_key_removed_and_recreated_keeps_concurrent_counts_and_registers() -> None:
    a, b = ORMap("a"), ORMap("b")
    b.merge(a.update("n", GCounter, lambda c: c.increment(1)))
    b.merge(a.update("r", MVRegister, lambda r: r.assign("x")))
    deltas_a = [
        a.remove("n"),
        a.remove("r"),
        a.update("n", GCounter, lambda c: c.increment(5)),
        a.update("r", MVRegister, lambda r: r.assign("y")),
    ]
    deltas_b = [
        b.update("n", GCounter, lambda c: c.increment(2)),
        b.update("r", MVRegister, lambda r: r.assign("z")),
    ]
    for d in deltas_b:
        a.merge(d)
    for d in deltas_a:
        b.merge(d)
    # counter: A's fresh +5, and B's version as B saw it (A's old +1, B's +2)
    # register: A's fresh y, and B's z (which superseded x as B saw it)
    for m in (a, b):
        assert m.value()["n"] == 8
        assert sorted(m.value()["r"]) == ["y", "z"]


def test_a_replica_whose_version_was_removed_by_a_peer_does_not_reuse_its_nested_dots() -> None:
    """C removes A's version of k while B's concurrent version survives; A writes again on
    top of B's version: A's new nested dots must differ from those of its removed version,
    which D (not having seen C's remove yet) still holds beside A's new one."""
    a, b, c, d = ORMap("a"), ORMap("b"), ORMap("c"), ORMap("d")
    d1 = a.update("k", ORSet, lambda s: s.add("x1"))
    d2 = b.update("k", ORSet, lambda s: s.add("b1"))
    c.merge(d1)
    rm = c.remove("k")
    a.merge(d2)
    a.merge(rm)  # A's own version is gone; B's (without x1) remains
    d3 = a.update("k", ORSet, lambda s: s.add("x2"))
    for x in (d1, d2, d3):
        d.merge(x)
    assert d.value() == {"k": frozenset({"x1", "b1", "x2"})}  # rm not seen yet at d
    d.merge(rm)
    for x in (d2, d3):
        c.merge(x)
    assert a.value() == c.value() == d.value() == {"k": frozenset({"b1", "x2"})}


# ---------------------------------------------------------------- 3: OR-Set GC, delta path


def test_or_set_remove_after_gc_removes_the_element_on_a_replica_holding_pre_gc_state() -> None:
    a, b = ORSet("a"), ORSet("b")
    da, db = a.add("x"), b.add("x")
    a.merge(db)
    b.merge(da)
    a.gc(VersionVector({"a": 1, "b": 1}))
    b.merge(a.remove("x"))  # B receives only this delta
    assert b.value() == frozenset()
    b.merge(a)
    a.merge(b)
    assert a == b
    assert a.value() == frozenset()


def test_or_set_re_add_after_gc_then_remove_leaves_no_stale_dot_on_other_replicas() -> None:
    a, b = ORSet("a"), ORSet("b")
    da, db = a.add("x"), b.add("x")
    a.merge(db)
    b.merge(da)
    a.gc(VersionVector({"a": 1, "b": 1}))
    b.merge(a.add("x"))  # a re-add supersedes every add a observed
    b.merge(a.remove("x"))
    assert b.value() == a.value() == frozenset()


# ---------------------------------------------------------------- 4: mixed-type elements


def test_one_true_and_one_point_zero_are_three_distinct_g_set_elements() -> None:
    a, b, c = GSet("a"), GSet("b"), GSet("c")
    a.add(1)
    b.add(True)
    c.add(1.0)
    for x in (a, b, c):
        for y in (a, b, c):
            x.merge(y)
    assert encode_crdt(a) == encode_crdt(b) == encode_crdt(c)
    assert a == b == c
    # wire order is msgpack byte order: 0x01, 0xc3 (true), 0xcb (float64)
    assert [(type(v), v) for v in a.to_wire()] == [(int, 1), (bool, True), (float, 1.0)]


def test_states_that_differ_only_in_element_types_are_not_equal() -> None:
    assert GSet(items={1}) != GSet(items={True})
    assert encode_crdt(GSet(items={1})) != encode_crdt(GSet(items={True}))
    assert TwoPSet(added={1.0}) != TwoPSet(added={1})


def test_or_set_removes_only_the_element_of_the_same_type() -> None:
    a, b = ORSet("a"), ORSet("b")
    b.merge(a.add(1))
    a.merge(b.add(True))
    a.merge(b.add("1"))
    b.merge(a.remove(1))
    a.merge(b)
    assert encode_crdt(a) == encode_crdt(b)
    entries = decode_crdt(encode_crdt(a)).to_wire()[0]
    assert [(type(x), x) for x, _ in entries] == [(str, "1"), (bool, True)]


def test_two_p_set_removing_true_does_not_remove_one() -> None:
    a = TwoPSet("a")
    a.add(1)
    a.add(True)
    a.remove(True)
    assert [[(type(x), x) for x in part] for part in a.to_wire()] == [
        [(int, 1), (bool, True)],
        [(bool, True)],
    ]
    assert [(type(x), x) for x in a.elements()] == [(int, 1)]


def test_or_map_keys_one_and_true_are_distinct_keys() -> None:
    a, b = ORMap("a"), ORMap("b")
    da = a.update(1, GCounter, lambda c: c.increment(1))
    db = b.update(True, GCounter, lambda c: c.increment(10))
    a.merge(db)
    b.merge(da)
    assert encode_crdt(a) == encode_crdt(b)
    ordered = a.keys()
    assert [(type(k), k) for k in ordered] == [(int, 1), (bool, True)]
    got_1, got_true = a.get(1), a.get(True)
    assert got_1 is not None
    assert got_true is not None
    assert (got_1.value(), got_true.value()) == (1, 10)
