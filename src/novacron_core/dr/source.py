"""Reading a region node's group log from its data dir without disturbing the node.

The node appends ``u32 len | u32 crc32c | record`` to ``<data-dir>/<protocol>/log-*.seg``
(``runtime/storage.py``); this replays the same records read-only into Raft's recovered state
(snapshot, hard state, entries). An incomplete record at the very end is a write in progress
(or a torn tail): it is left out, never cut. A compaction may delete a segment between the
listing and the read: the read starts over.
"""

from __future__ import annotations

import struct
from pathlib import Path

import crc32c

from novacron_core.codec import decode
from novacron_core.consensus.raft.storage import RaftLogFormat, Recovered
from novacron_core.runtime.storage import CorruptLogError

_HEAD = struct.Struct(">II")


def read_group(data_dir: Path, protocol: str = "raft") -> Recovered:
    if protocol != "raft":
        raise ValueError(f"backups read Raft logs; this region runs {protocol}")
    group = Path(data_dir) / protocol
    if not group.is_dir():
        raise FileNotFoundError(f"{group}: no {protocol} log here (is --data-dir a node's?)")
    for _ in range(5):
        try:
            return _replay(sorted(group.glob("log-*.seg")))
        except FileNotFoundError:
            continue  # compacted under us: list again
    raise RuntimeError(f"{group}: the log kept changing under the reader")


def _replay(segments: list[Path]) -> Recovered:
    fmt = RaftLogFormat()
    state = fmt.new_state()
    for i, seg in enumerate(segments):
        data = seg.read_bytes()
        pos = 0
        while pos + 8 <= len(data):
            n, crc = _HEAD.unpack_from(data, pos)
            end = pos + 8 + n
            if n == 0 or end > len(data) or crc32c.crc32c(data[pos + 8 : end]) != crc:
                if i == len(segments) - 1 and (end >= len(data) or not any(data[pos:])):
                    break  # the tail being written
                raise CorruptLogError(f"{seg} @ {pos}: bad record")
            fmt.apply(state, decode(data[pos + 8 : end], max_size=n))
            pos = end
    return state


def last_index(rec: Recovered) -> tuple[int, int]:
    """(index, term) of the last entry the log holds (or of its snapshot)."""
    if rec.entries:
        return rec.entries[-1].index, rec.entries[-1].term
    return rec.snap.index, rec.snap.term
