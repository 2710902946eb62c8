"""The store: any type by key, subscriptions, snapshots, and the on-disk journal."""

from __future__ import annotations

from pathlib import Path

import pytest

from novacron_core.runtime.sync_journal import DiskDurable
from novacron_core.sync.crdt import RGA, Crdt, GCounter, ORSet
from novacron_core.sync.engine import Mutate, Read, SyncConfig, SyncNode
from novacron_core.sync.merkle import RANGES
from novacron_core.sync.store import Store


def test_store_holds_any_type_and_notifies_subscribers_by_prefix() -> None:
    s = Store("a")
    seen: list[tuple[str, object]] = []
    stop = s.subscribe("vms/", lambda k, v: seen.append((k, v.value())))
    s.update("vms/1", ORSet, lambda x: x.add("on"))
    s.update("hosts/1", GCounter, lambda c: c.increment(2))
    remote = RGA("b")
    s.merge("vms/doc", remote.insert(0, "hi"))
    stop()
    s.update("vms/1", ORSet, lambda x: x.add("off"))
    assert seen == [("vms/1", frozenset({"on"})), ("vms/doc", ["h", "i"])]
    assert s.value("hosts/1") == 2
    assert isinstance(s.get("vms/doc"), RGA)


def test_store_refuses_to_change_a_keys_type_locally_and_ignores_it_remotely() -> None:
    s = Store("a")
    s.update("k", GCounter, lambda c: c.increment(1))
    with pytest.raises(TypeError):
        s.update("k", ORSet, lambda x: x.add(1))
    s.merge("k", ORSet("b"))
    assert s.value("k") == 1


def test_store_snapshot_restores_every_value() -> None:
    s = Store("a")
    s.update("c", GCounter, lambda c: c.increment(3))
    s.update("s", ORSet, lambda x: x.add("x"))
    t = Store("a")
    t.restore(s.snapshot())
    assert [(k, v.value()) for k, v in t] == [(k, v.value()) for k, v in s]


def test_merkle_ranges_differ_only_where_keys_differ() -> None:
    a, b = Store("a"), Store("b")
    for i in range(500):
        delta = a.update(f"k{i}", GCounter, lambda c: c.increment(1))
        b.merge(f"k{i}", delta)
    assert a.merkle.range_hashes() == b.merkle.range_hashes()
    b.update("k7", GCounter, lambda c: c.increment(1))
    differ = [r for r in range(RANGES) if a.merkle.range_hashes()[r] != b.merkle.range_hashes()[r]]
    assert len(differ) == 1


def test_node_restarts_from_disk_with_snapshot_and_journal(tmp_path: Path) -> None:
    cfg = SyncConfig(snapshot_every=5)
    disk = DiskDurable(tmp_path, fsync="always")
    node = SyncNode("a", "r", {}, disk, cfg)
    disk.apply(node.on_start(0.0).writes)
    for i in range(12):
        ready = node.on_request(float(i), i, Mutate(f"k{i % 3}", GCounter, _inc))
        disk.apply(ready.writes)
    disk.close()
    assert (tmp_path / "snapshot").exists()
    again = DiskDurable(tmp_path)
    back = SyncNode("a", "r", {}, again, cfg)
    assert back.epoch >> 16 == 2  # the second start (16 random bits below the count)
    assert back.replica == f"a~{back.epoch}"
    assert {k: v.value() for k, v in back.store} == {"k0": 4, "k1": 4, "k2": 4}
    assert back.seen == node.seen
    ready = back.on_request(20.0, 99, Read("k1"))
    assert ready.replies == [(99, 4)]
    again.close()


def test_a_torn_journal_tail_is_dropped_and_the_rest_kept(tmp_path: Path) -> None:
    disk = DiskDurable(tmp_path, fsync="never")
    node = SyncNode("a", "r", {}, disk)
    start = node.on_start(0.0)
    assert start.sync  # the epoch bump must reach the disk before anything else happens
    disk.apply(start.writes, sync=start.sync)
    for i in range(3):
        disk.apply(node.on_request(float(i), i, Mutate("k", GCounter, _inc)).writes)
    disk.fsync()
    disk.close()
    with open(tmp_path / "journal", "ab") as f:
        f.write(b"\x00\x00\x01\x00garbage")  # a write cut short by a crash
    again = DiskDurable(tmp_path)
    assert SyncNode("a", "r", {}, again).store.value("k") == 3
    again.close()


def _inc(c: Crdt) -> Crdt:
    assert isinstance(c, GCounter)
    return c.increment(1)
