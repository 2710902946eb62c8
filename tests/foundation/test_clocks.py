from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from novacron_core.clocks import (
    HLC,
    CausalContext,
    ClockDriftError,
    Dot,
    HLCTimestamp,
    Order,
    VersionVector,
)


def test_hlc_never_goes_backwards_when_physical_clock_does() -> None:
    clock = HLC("a")
    t1 = clock.now(1000)
    t2 = clock.now(900)  # wall clock stepped back
    t3 = clock.now(900)
    assert t1 < t2 < t3
    assert t2.wall_ms == 1000


def test_hlc_receive_orders_after_both_local_and_remote() -> None:
    a, b = HLC("a"), HLC("b")
    sent = a.now(5000)
    got = b.update(sent, physical_ms=4800)  # b is 200 ms behind, within drift
    assert got > sent
    assert b.now(4800) > got


def test_hlc_rejects_remote_far_in_the_future() -> None:
    clock = HLC("a", max_drift_ms=100)
    with pytest.raises(ClockDriftError, match="ahead"):
        clock.update(HLCTimestamp(10_000, 0, "b"), physical_ms=1000)


def test_hlc_timestamp_wire_round_trip_and_validation() -> None:
    ts = HLCTimestamp(12, 3, "r1")
    assert HLCTimestamp.from_wire(ts.to_wire()) == ts
    with pytest.raises(ValueError, match="HLC"):
        HLCTimestamp.from_wire([1, "x", "r"])


vvs = st.dictionaries(st.sampled_from("abcd"), st.integers(0, 5)).map(VersionVector)


@given(vvs, vvs)
def test_version_vector_compare_is_consistent_with_dominates(
    a: VersionVector, b: VersionVector
) -> None:
    order = a.compare(b)
    assert (order in (Order.AFTER, Order.EQUAL)) == a.dominates(b)
    assert (order in (Order.BEFORE, Order.EQUAL)) == b.dominates(a)
    assert (
        b.compare(a)
        == {
            Order.AFTER: Order.BEFORE,
            Order.BEFORE: Order.AFTER,
            Order.EQUAL: Order.EQUAL,
            Order.CONCURRENT: Order.CONCURRENT,
        }[order]
    )


@given(vvs, vvs, vvs)
def test_version_vector_merge_is_a_join(
    a: VersionVector, b: VersionVector, c: VersionVector
) -> None:
    assert a.merge(b) == b.merge(a)
    assert a.merge(b).merge(c) == a.merge(b.merge(c))
    assert a.merge(a) == a
    m = a.merge(b)
    assert m.dominates(a)
    assert m.dominates(b)
    assert a.dominates(a.meet(b))


def test_concurrent_vectors_are_detected() -> None:
    a = VersionVector({"x": 2, "y": 1})
    b = VersionVector({"x": 1, "y": 2})
    assert a.compare(b) is Order.CONCURRENT
    assert not a.dominates(b)


dots = st.builds(Dot, st.sampled_from("abc"), st.integers(1, 12))


@given(st.lists(dots, max_size=40))
def test_causal_context_compresses_without_losing_dots(ds: list[Dot]) -> None:
    ctx = CausalContext()
    for d in ds:
        ctx.add(d)
    for d in ds:
        assert ctx.contains(d)
    for r in "abc":
        for n in range(1, 14):
            assert ctx.contains(Dot(r, n)) == (Dot(r, n) in set(ds))
    # compression: no cloud dot is contiguous with the vector
    for d in ctx.cloud:
        assert d.counter > ctx.vv.get(d.replica) + 1
    assert CausalContext.from_wire(ctx.to_wire()) == ctx


@given(st.lists(dots, max_size=20), st.lists(dots, max_size=20))
def test_causal_context_merge_is_union(xs: list[Dot], ys: list[Dot]) -> None:
    a, b = CausalContext(cloud=xs), CausalContext(cloud=ys)
    a.merge(b)
    for d in set(xs) | set(ys):
        assert a.contains(d)
    assert a == CausalContext(cloud=xs + ys)


def test_next_dot_is_fresh_and_contiguous() -> None:
    ctx = CausalContext()
    assert ctx.next_dot("a") == Dot("a", 1)
    assert ctx.next_dot("a") == Dot("a", 2)
    assert ctx.vv.get("a") == 2
