"""The on-disk log: what survives, what is cut off (torn tail), what stops the node."""

from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path

import pytest

from novacron_core.codec import encode, encode_parts
from novacron_core.consensus.kv import KVStore, Session
from novacron_core.consensus.raft import (
    AppendEntries,
    ConfigState,
    Entry,
    HardState,
    SaveSnapshot,
    SnapshotMeta,
)
from novacron_core.consensus.raft.storage import RaftLogFormat, SaveCapturedSnapshot
from novacron_core.consensus.snapshot_data import Deferred
from novacron_core.runtime.storage import CorruptLogError, FileStorage


def _fill(path: Path, n: int = 10) -> None:
    s = FileStorage(path, RaftLogFormat())
    s.apply([HardState(2, "n1")])
    for i in range(1, n + 1):
        s.apply([AppendEntries([Entry(2, i, 0, f"cmd{i}".encode())])])
    s.sync()
    s.close()


def _segment(path: Path) -> Path:
    return sorted(path.glob("log-*.seg"))[-1]


def test_synced_writes_survive_a_restart(tmp_path: Path) -> None:
    _fill(tmp_path)
    got = FileStorage(tmp_path, RaftLogFormat()).load()
    assert got.hard == HardState(2, "n1")
    assert [e.index for e in got.entries] == list(range(1, 11))
    assert got.entries[-1].data == b"cmd10"


def test_torn_tail_is_truncated_and_reported(tmp_path: Path) -> None:
    _fill(tmp_path)
    seg = _segment(tmp_path)
    size = seg.stat().st_size
    with open(seg, "r+b") as f:
        f.truncate(size - 3)  # the process died halfway through the last append
    s = FileStorage(tmp_path, RaftLogFormat())
    assert s.torn_bytes > 0
    assert [e.index for e in s.load().entries] == list(range(1, 10))
    s.apply([AppendEntries([Entry(3, 10, 0, b"again")])])
    s.close()
    assert FileStorage(tmp_path, RaftLogFormat()).load().entries[-1].data == b"again"


def test_corruption_in_the_middle_stops_the_node(tmp_path: Path) -> None:
    _fill(tmp_path)
    seg = _segment(tmp_path)
    data = bytearray(seg.read_bytes())
    data[len(data) // 2] ^= 0xFF
    seg.write_bytes(bytes(data))
    with pytest.raises(CorruptLogError, match="corrupt"):
        FileStorage(tmp_path, RaftLogFormat())


def test_snapshot_compacts_old_segments_and_keeps_the_tail(tmp_path: Path) -> None:
    _fill(tmp_path)
    s = FileStorage(tmp_path, RaftLogFormat())
    s.apply([SaveSnapshot(SnapshotMeta(7, 2, ConfigState(("n1",))), b"state@7")])
    s.close()
    # the rewritten start, and the segment appends went on in; the old segment is gone
    assert [p.name for p in sorted(tmp_path.glob("log-*"))] == [
        "log-00000002.seg",
        "log-00000003.seg",
    ]
    got = FileStorage(tmp_path, RaftLogFormat()).load()
    assert (got.snap.index, got.snap_data) == (7, b"state@7")
    assert [e.index for e in got.entries] == [8, 9, 10]
    assert got.hard == HardState(2, "n1")


def test_suffix_truncation_is_replayed(tmp_path: Path) -> None:
    _fill(tmp_path)
    s = FileStorage(tmp_path, RaftLogFormat())
    s.apply([AppendEntries([Entry(5, 4, 0, b"new leader")])])
    s.close()
    got = FileStorage(tmp_path, RaftLogFormat()).load()
    assert [e.index for e in got.entries] == [1, 2, 3, 4]
    assert got.entries[-1].term == 5


def test_a_snapshot_larger_than_a_network_frame_survives_a_restart(tmp_path: Path) -> None:
    # A region's snapshot is one record; a fleet's state past the 16 MiB frame limit used to
    # make the node's own log unreadable at its next start.
    big = bytes(range(256)) * (17 * 1024 * 1024 // 256)
    s = FileStorage(tmp_path, RaftLogFormat())
    s.apply([HardState(2, "n1")])
    s.apply([SaveSnapshot(SnapshotMeta(7, 2, ConfigState(("n1",))), big)])
    s.sync()
    s.close()
    got = FileStorage(tmp_path, RaftLogFormat()).load()
    assert got.snap.index == 7
    assert got.snap_data == big


def test_a_deferred_snapshot_is_encoded_and_written_off_the_caller(tmp_path: Path) -> None:
    # The leader's own snapshot: apply (on the event loop) and sync (the batch's fsync) must
    # not wait for its encoding and writing — that wait cost the group its leader (issue
    # 18). A crash at any point leaves segments that replay to the whole state.
    _fill(tmp_path)
    release = threading.Event()

    def slow_encode() -> bytes:
        assert release.wait(30)
        return b"state@7"

    s = FileStorage(tmp_path, RaftLogFormat())
    meta = SnapshotMeta(7, 2, ConfigState(("n1",)))
    t0 = time.perf_counter()
    s.apply([SaveCapturedSnapshot(meta, Deferred(slow_encode))])
    s.apply([AppendEntries([Entry(2, 11, 0, b"cmd11")]), AppendEntries([Entry(3, 12, 0, b"x")])])
    s.sync()
    assert time.perf_counter() - t0 < 5  # (the encode blocks for up to 30 s)
    # a crash now: the old segments and the new appends, no snapshot yet
    shutil.copytree(tmp_path, tmp_path.parent / "crash-before")
    got = FileStorage(tmp_path.parent / "crash-before", RaftLogFormat()).load()
    assert got.snap.index == 0
    assert [e.index for e in got.entries] == list(range(1, 13))
    release.set()
    s.wait_compaction()
    shutil.copytree(tmp_path, tmp_path.parent / "crash-after")
    got = FileStorage(tmp_path.parent / "crash-after", RaftLogFormat()).load()
    assert (got.snap.index, got.snap_data) == (7, b"state@7")
    assert [e.index for e in got.entries] == [8, 9, 10, 11, 12]
    assert got.hard == HardState(2, "n1")
    assert not (tmp_path / "log-00000001.seg").exists()
    s.close()


def test_a_crash_between_the_rename_and_the_deletes_replays_to_the_same_state(
    tmp_path: Path,
) -> None:
    # The rewritten start is durable but the segments it replaces are still there: it is
    # replayed after them (a snapshot keeps the entries after it), then the new appends.
    _fill(tmp_path)
    shutil.copy(tmp_path / "log-00000001.seg", tmp_path.parent / "old.seg")
    s = FileStorage(tmp_path, RaftLogFormat())
    s.apply([SaveSnapshot(SnapshotMeta(7, 2, ConfigState(("n1",))), b"state@7")])
    s.apply([AppendEntries([Entry(3, 9, 0, b"new")])])  # (truncates 9 and 10)
    s.close()
    shutil.copy(tmp_path.parent / "old.seg", tmp_path / "log-00000001.seg")
    got = FileStorage(tmp_path, RaftLogFormat()).load()
    assert (got.snap.index, got.snap_data) == (7, b"state@7")
    assert [(e.index, e.term) for e in got.entries] == [(8, 2), (9, 3)]


def test_an_installed_snapshot_is_durable_when_sync_returns(tmp_path: Path) -> None:
    _fill(tmp_path)
    s = FileStorage(tmp_path, RaftLogFormat())
    s.apply([SaveSnapshot(SnapshotMeta(20, 4, ConfigState(("n1",))), b"state@20")])
    s.sync()
    shutil.copytree(tmp_path, tmp_path.parent / "crash")  # (s is not closed: a crash)
    got = FileStorage(tmp_path.parent / "crash", RaftLogFormat()).load()
    assert (got.snap.index, got.snap_data, got.entries) == (20, b"state@20", [])
    s.close()


def test_a_large_record_in_pieces_is_the_same_bytes() -> None:
    for n in (0, 100, 1 << 16, (1 << 20) + 3):
        w = SaveSnapshot(SnapshotMeta(3, 2, ConfigState(("n1",))), os.urandom(n))
        assert b"".join(encode_parts(w, large=1)) == encode(w)


def test_a_captured_kv_state_encodes_as_its_snapshot_did() -> None:
    store = KVStore()
    for i in range(500):
        store.data[f"k{i}"] = os.urandom(i * 7)
    store.sessions["c1"] = Session(4, b"r")
    store.applied = 42
    before = dict(store.data)
    later = store.capture()
    expected = store.snapshot()
    store.data["k1"] = b"changed after the capture"
    assert later() == expected
    other = KVStore()
    other.restore(later())
    assert other.data == before
