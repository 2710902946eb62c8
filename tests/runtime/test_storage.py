"""The on-disk log: what survives, what is cut off (torn tail), what stops the node."""

from __future__ import annotations

from pathlib import Path

import pytest

from novacron_core.consensus.raft import (
    AppendEntries,
    ConfigState,
    Entry,
    HardState,
    SaveSnapshot,
    SnapshotMeta,
)
from novacron_core.consensus.raft.storage import RaftLogFormat
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
    assert len(list(tmp_path.glob("log-*.seg"))) == 1
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
