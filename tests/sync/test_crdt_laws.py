"""The lattice laws and delivery guarantees every CRDT must meet, checked on random runs."""

from __future__ import annotations

import random
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from novacron_core.clocks import VersionVector
from novacron_core.codec import CodecError
from novacron_core.sync.crdt import Crdt, decode_crdt, encode_crdt
from tests.sync.kinds import KINDS, Kind

REPLICAS = ["r0", "r1", "r2"]
LAWS = settings(max_examples=75, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _run(kind: Kind, steps: list[tuple[int, Any, int | None]]) -> tuple[list[Crdt], list[Crdt]]:
    """Mutate three replicas; a step with a sync source first merges that replica's state."""
    reps = [kind.make(r) for r in REPLICAS]
    deltas: list[Crdt] = []
    for who, op, sync_from in steps:
        if sync_from is not None and sync_from != who:
            reps[who].merge(reps[sync_from].copy())
        deltas.append(kind.apply(reps[who], op).copy())
    return reps, deltas


def _steps(kind: Kind) -> st.SearchStrategy[list[tuple[int, Any, int | None]]]:
    step = st.tuples(st.integers(0, 2), kind.op, st.none() | st.integers(0, 2))
    return st.lists(step, max_size=25)


def _join(kind: Kind, parts: list[Crdt]) -> Crdt:
    out = kind.make("")
    for p in parts:
        out.merge(p)
    return out


def _same(a: Crdt, b: Crdt) -> bool:
    # bytes, not Python equality of the bodies: ``[1] == [True]`` would hide a difference
    return encode_crdt(a) == encode_crdt(b) and a.value() == b.value()


@pytest.mark.parametrize("kind", KINDS, ids=repr)
@LAWS
@given(data=st.data())
def test_merge_is_commutative_associative_idempotent(kind: Kind, data: st.DataObject) -> None:
    reps, _ = _run(kind, data.draw(_steps(kind)))
    a, b, c = reps
    ab, ba = a.copy(), b.copy()
    ab.merge(b)
    ba.merge(a)
    assert _same(ab, ba)
    ab_c, a_bc, bc = ab.copy(), a.copy(), b.copy()
    ab_c.merge(c)
    bc.merge(c)
    a_bc.merge(bc)
    assert _same(ab_c, a_bc)
    aa = a.copy()
    aa.merge(a)
    assert _same(aa, a)


@pytest.mark.parametrize("kind", KINDS, ids=repr)
@LAWS
@given(data=st.data())
def test_joining_all_deltas_equals_joining_all_states(kind: Kind, data: st.DataObject) -> None:
    reps, deltas = _run(kind, data.draw(_steps(kind)))
    assert _same(_join(kind, deltas), _join(kind, reps))


@pytest.mark.parametrize("kind", KINDS, ids=repr)
@LAWS
@given(ops=st.data())
def test_deltas_of_a_lone_replica_join_to_its_state(kind: Kind, ops: st.DataObject) -> None:
    steps = ops.draw(st.lists(kind.op, max_size=30))
    rep = kind.make("solo")
    deltas = [kind.apply(rep, op).copy() for op in steps]
    assert _same(_join(kind, deltas), rep)


@pytest.mark.parametrize("kind", KINDS, ids=repr)
@LAWS
@given(data=st.data(), seed=st.integers(0, 2**32))
def test_any_order_with_duplicates_and_late_retries_converges(
    kind: Kind, data: st.DataObject, seed: int
) -> None:
    reps, deltas = _run(kind, data.draw(_steps(kind)))
    expected = _join(kind, reps)
    rng = random.Random(seed)
    for _ in range(3):
        stream = deltas + rng.sample(deltas, len(deltas) // 2)  # duplicates
        rng.shuffle(stream)
        lost = set(rng.sample(range(len(stream)), len(stream) // 3))
        first = [d for i, d in enumerate(stream) if i not in lost]
        retries = [d for i, d in enumerate(stream) if i in lost]
        replica = kind.make("x")
        for d in first:
            replica.merge(decode_crdt(encode_crdt(d)))  # through the wire, like a peer would
        for d in retries:
            replica.merge(d)
        assert _same(replica, expected)


@pytest.mark.parametrize("kind", KINDS, ids=repr)
@LAWS
@given(data=st.data())
def test_gc_at_the_stable_point_keeps_values_and_convergence(
    kind: Kind, data: st.DataObject
) -> None:
    reps, _ = _run(kind, data.draw(_steps(kind)))
    for r in reps[1:]:
        reps[0].merge(r)
    for r in reps[1:]:
        r.merge(reps[0])
    expected = reps[0].value()
    ctx = getattr(reps[0], "ctx", None)
    stable = ctx.vv if ctx is not None else VersionVector()
    reps[1].gc(stable)
    assert reps[1].value() == expected
    reps[2].merge(reps[1])
    reps[1].merge(reps[0])
    assert _same(reps[1], reps[2])
    assert reps[1].value() == expected


@pytest.mark.parametrize("kind", KINDS, ids=repr)
@LAWS
@given(data=st.data())
def test_encoding_round_trips(kind: Kind, data: st.DataObject) -> None:
    reps, deltas = _run(kind, data.draw(_steps(kind)))
    for x in [*reps, *deltas]:
        back = decode_crdt(encode_crdt(x))
        assert type(back) is type(x)
        assert _same(back, x)


@pytest.mark.parametrize("kind", KINDS, ids=repr)
@LAWS
@given(data=st.data(), flips=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255))))
def test_corrupted_encodings_raise_only_codec_error(
    kind: Kind, data: st.DataObject, flips: list[tuple[int, int]]
) -> None:
    reps, _ = _run(kind, data.draw(_steps(kind)))
    raw = bytearray(encode_crdt(reps[0]))
    for pos, byte in flips:
        raw[pos % len(raw)] = byte
    _decode_or_codec_error(bytes(raw))


json_like = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 300) | st.text(max_size=3) | st.binary(max_size=3),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=2), inner),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(kind=st.integers(0, 12), body=json_like)
def test_well_formed_msgpack_of_the_wrong_shape_raises_only_codec_error(
    kind: int, body: Any
) -> None:
    _decode_or_codec_error(msgpack.packb([kind, body], use_bin_type=True))


@settings(max_examples=300, deadline=None)
@given(payload=st.binary(max_size=64))
def test_random_bytes_raise_only_codec_error(payload: bytes) -> None:
    _decode_or_codec_error(payload)


def _decode_or_codec_error(payload: bytes) -> None:
    try:
        x = decode_crdt(payload)
    except CodecError:
        return
    # whatever decoded must be a usable value: readable, re-encodable, mergeable
    x.value()
    assert _same(decode_crdt(encode_crdt(x)), x)
    x.merge(x.copy())
