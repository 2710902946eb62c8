"""The backup agent on a real data dir (the node's FileStorage, fsync'd): only committed
entries leave, a compacted log asks for a base backup, and every shipped index restores to
the model's state."""

from __future__ import annotations

from pathlib import Path

import pytest

from novacron_core.codec import encode
from novacron_core.consensus.interface import COMMAND, ConfigState
from novacron_core.consensus.kv import PUT, KVCommand, KVStore
from novacron_core.consensus.raft.messages import Entry, SnapshotMeta
from novacron_core.consensus.raft.storage import AppendEntries, RaftLogFormat, SaveSnapshot
from novacron_core.dr import agent, catalog
from novacron_core.dr.repo import BackupRepo
from novacron_core.dr.targets import FileTarget
from novacron_core.runtime.storage import FileStorage


def entry(i: int) -> Entry:
    return Entry(1, i, COMMAND, encode(KVCommand(PUT, f"k{i % 4}", f"v{i}".encode())))


def model(upto: int) -> dict[str, bytes]:
    return {f"k{i % 4}": f"v{i}".encode() for i in range(1, upto + 1)}


def test_only_committed_entries_are_shipped_and_each_restores(tmp_path: Path) -> None:
    fs = FileStorage(tmp_path / "node" / "raft", RaftLogFormat())
    fs.apply([AppendEntries([entry(i) for i in range(1, 11)])])
    fs.sync()
    repo = BackupRepo(FileTarget(tmp_path / "t"), "g", b"k" * 32)
    ddir = tmp_path / "node"
    with pytest.raises(agent.LogGap, match="no full backup"):
        agent.create(repo, ddir, 6, catalog.INCR, 1.0)
    assert agent.create(repo, ddir, 6, catalog.FULL, 1.0).meta is not None
    assert agent.create(repo, ddir, 6, catalog.LOG, 2.0).meta is None
    shipped = agent.create(repo, ddir, 8, catalog.LOG, 3.0).meta
    assert shipped is not None
    assert (shipped.first, shipped.last) == (7, 8)  # 9 and 10 are not committed yet
    incr = agent.create(repo, ddir, 10, catalog.INCR, 4.0).meta
    assert incr is not None
    assert (incr.parent, incr.last) == (6, 10)
    assert agent.create(repo, ddir, 10, catalog.INCR, 5.0).meta is None  # nothing new
    objs = repo.objects()
    assert catalog.window(objs) == (6, 10)
    for i in range(6, 11):
        assert repo.rebuild(catalog.plan(objs, i)).store.data == model(i)
    # the node compacts its log past what was shipped: a base backup must come first
    store = KVStore()
    for i in range(1, 15):
        store.apply(i, entry(i).data)
    fs.apply([SaveSnapshot(SnapshotMeta(14, 1, ConfigState(("n1",))), store.snapshot())])
    fs.apply([AppendEntries([entry(15)])])
    fs.close()
    with pytest.raises(agent.LogGap, match="compacted"):
        agent.create(repo, ddir, 15, catalog.LOG, 6.0)
    assert agent.create(repo, ddir, 15, catalog.FULL, 6.0).meta is not None
    assert repo.rebuild(catalog.plan(repo.objects(), 15)).store.data == model(15)
