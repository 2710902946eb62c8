"""Backups and point-in-time restore against a reference model: random committed histories,
random fulls / incrementals / shipped log chunks (with gaps), then every index the catalog
calls restorable rebuilds exactly the model's state at that index, and every other index is
refused with NotRestorable."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from novacron_core.codec import encode
from novacron_core.consensus.interface import COMMAND, ConfigState
from novacron_core.consensus.kv import DELETE, PUT, KVCommand, KVStore
from novacron_core.consensus.raft.messages import Entry
from novacron_core.dr import catalog, crypto, state
from novacron_core.dr.catalog import FULL, INCR, LOG, NotRestorable
from novacron_core.dr.repo import BackupRepo
from tests.dr.memtarget import MemTarget

KEYS = ["a", "b", "c", "vm/1", "vm/2"]


def model(commands: list[tuple[str, str, bytes]], upto: int) -> dict[str, bytes]:
    """The documented semantics of put/delete, in order, after ``upto`` commands."""
    data: dict[str, bytes] = {}
    for op, k, v in commands[:upto]:
        if op == PUT:
            data[k] = v
        else:
            data.pop(k, None)
    return data


def model_restorable(objs: list[catalog.ObjectMeta], i: int) -> bool:
    chains = catalog.bases(objs)
    covered = {j for o in objs if o.kind == LOG for j in range(o.first, o.last + 1)}
    return any(b <= i and all(j in covered for j in range(b + 1, i + 1)) for b in chains)


commands = st.lists(
    st.tuples(st.sampled_from([PUT, PUT, DELETE]), st.sampled_from(KEYS), st.binary(max_size=6)),
    min_size=1,
    max_size=40,
)


@settings(max_examples=150, deadline=None)
@given(commands, st.data())
def test_every_restorable_index_rebuilds_the_models_state(
    cmds: list[tuple[str, str, bytes]], data: st.DataObject
) -> None:
    entries = [
        Entry(1, i + 1, COMMAND, encode(KVCommand(op, k, v if op == PUT else None)))
        for i, (op, k, v) in enumerate(cmds)
    ]
    n = len(entries)
    key = data.draw(st.sampled_from([None, b"k" * 32]))
    repo = BackupRepo(MemTarget(), "g", key)
    live = state.Rebuilt(KVStore(), 0, 0, ConfigState(("n1",)))
    last_base: state.Rebuilt | None = None
    shipped = 0
    points = sorted(set(data.draw(st.lists(st.integers(0, n), max_size=6))))
    for t, p in enumerate(points):
        state.apply_entries(live, entries, p)
        action = data.draw(st.sampled_from([FULL, INCR, LOG, LOG]))
        if action == FULL or (action == INCR and last_base is None):
            repo.put(FULL, state.full_of(live), p, p, 1, t, root=state.state_root(live.store))
            last_base = state.from_full(state.full_of(live))
        elif action == INCR and last_base is not None and p > last_base.index:
            payload = state.delta_between(last_base, live)
            repo.put(
                INCR, payload, p, p, 1, t, parent=last_base.index, root=state.state_root(live.store)
            )
            last_base = state.from_full(state.full_of(live))
        elif action == LOG and p > shipped and data.draw(st.integers(0, 4)) > 0:
            # (one in five is lost: a gap in the shipped log)
            repo.put(LOG, state.encode_chunk(entries[shipped:p]), shipped + 1, p, 1, t)
        shipped = max(shipped, p)
    objs = repo.objects()
    for i in range(n + 1):
        if model_restorable(objs, i):
            rebuilt = repo.rebuild(catalog.plan(objs, i))
            assert rebuilt.store.data == model(cmds, i), f"index {i}"
            assert rebuilt.index == i
        else:
            with pytest.raises(NotRestorable):
                catalog.plan(objs, i)
    first, last = catalog.window(objs)
    if catalog.bases(objs):
        assert model_restorable(objs, first)
        assert model_restorable(objs, last)
        assert not model_restorable(objs, last + 1)


def test_time_selects_what_was_shipped_by_then() -> None:
    repo = BackupRepo(MemTarget(), "g", None)
    st0 = state.Rebuilt(KVStore(), 0, 0, ConfigState())
    repo.put(FULL, state.full_of(st0), 0, 0, 0, 100.0)
    e = [Entry(1, i, COMMAND, encode(KVCommand(PUT, "k", str(i).encode()))) for i in range(1, 7)]
    repo.put(LOG, state.encode_chunk(e[:3]), 1, 3, 1, 110.0)
    repo.put(LOG, state.encode_chunk(e[3:]), 4, 6, 1, 120.0)
    objs = repo.objects()
    assert catalog.index_at(objs, 115.0) == 3
    assert catalog.index_at(objs, 120.0) == 6
    with pytest.raises(NotRestorable):
        catalog.index_at(objs, 99.0)


def test_a_corrupted_or_swapped_object_is_named_not_restored() -> None:
    target = MemTarget()
    repo = BackupRepo(target, "g", b"x" * 32)
    st0 = state.Rebuilt(KVStore(), 0, 0, ConfigState())
    st0.store.data["k"] = b"v"
    meta = repo.put(FULL, state.full_of(st0), 0, 0, 0, 1.0, root=state.state_root(st0.store))
    stored = bytearray(target.objects[meta.key])
    stored[-1] ^= 1
    target.objects[meta.key] = bytes(stored)
    with pytest.raises(crypto.IntegrityError, match="checksum"):
        repo.rebuild(catalog.plan(repo.objects(), 0))
    wrong = BackupRepo(target, "g", b"y" * 32)
    target.objects[meta.key] = bytes(stored[:-1]) + bytes([stored[-1] ^ 1])
    with pytest.raises(crypto.IntegrityError, match="key"):
        wrong.rebuild(catalog.plan(wrong.objects(), 0))
    plain = BackupRepo(target, "g", None)
    with pytest.raises(crypto.IntegrityError, match="key-file"):
        plain.rebuild(catalog.plan(plain.objects(), 0))


def test_schedule_takes_full_then_incremental_then_log() -> None:
    assert catalog.due([], 0.0, 86400, 3600) == FULL
    full = catalog.ObjectMeta("g/full/0", FULL, 0, 0, 0, 1000.0, "", 0, False)
    assert catalog.due([full], 1000.0 + 60, 86400, 3600) == LOG
    assert catalog.due([full], 1000.0 + 3600, 86400, 3600) == INCR
    assert catalog.due([full], 1000.0 + 86400, 86400, 3600) == FULL


def test_a_one_entry_gap_in_the_log_bounds_the_window() -> None:
    repo = BackupRepo(MemTarget(), "g", None)
    repo.put(FULL, state.full_of(state.Rebuilt(KVStore(), 0, 0, ConfigState())), 0, 0, 0, 1.0)
    e = [Entry(1, i, COMMAND, encode(KVCommand(PUT, "k", str(i).encode()))) for i in range(1, 6)]
    repo.put(LOG, state.encode_chunk(e[:2]), 1, 2, 1, 2.0)
    repo.put(LOG, state.encode_chunk(e[3:]), 4, 5, 1, 3.0)  # entry 3 never shipped
    objs = repo.objects()
    assert catalog.window(objs) == (0, 2)
    with pytest.raises(NotRestorable):
        catalog.plan(objs, 4)
    assert repo.rebuild(catalog.plan(objs, 2)).store.data == {"k": b"2"}
