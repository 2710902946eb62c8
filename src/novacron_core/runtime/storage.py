"""Durable group storage: an append-only segmented log with a CRC32C per record.

Record layout: ``u32 length | u32 crc32c(payload) | payload`` where the payload is a codec
record, one of the consensus protocol's write records (Raft's: HardState, AppendEntries,
SaveSnapshot). What a record means is the protocol's :class:`~novacron_core.consensus.
interface.LogFormat`: it folds records into the recovered state, says which record
supersedes the log (a snapshot: the log is rewritten from the state), and what a
rewritten log starts with. Writes go to the OS as they come; :meth:`FileStorage.sync`
fsyncs once for however many writes accumulated (group commit).

Why not SQLite in WAL mode: a Raft log is append-mostly with rare suffix truncation, which a
plain file expresses as one ``write`` + one ``fdatasync`` per batch; SQLite adds a B-tree
update, WAL frame headers and a checkpoint for the same durability (see docs/raft.md for the
measurement).

Recovery: a bad record at the very end of the newest segment is a torn write (the process
died mid-append): it is cut off and reported. A bad record with valid data after it, or in
an older segment, is corruption: the node refuses to start rather than serve wrong data.
"""

from __future__ import annotations

import logging
import os
import struct
from pathlib import Path
from typing import Any

import crc32c

from novacron_core.codec import CodecError, decode, encode
from novacron_core.consensus.interface import LogFormat

log = logging.getLogger(__name__)
_HEAD = struct.Struct(">II")
SEGMENT_BYTES = 64 << 20


class CorruptLogError(RuntimeError):
    """A record in the middle of the log fails its checksum: stop, do not guess."""


class FileStorage:
    def __init__(self, directory: str | Path, fmt: LogFormat, fsync: bool = True) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.fmt = fmt
        self.fsync_enabled = fsync
        self.state = fmt.new_state()
        self.torn_bytes = 0  # bytes cut off a torn tail at start (reported)
        self._segments = sorted(self.dir.glob("log-*.seg"))
        for i, seg in enumerate(self._segments):
            self._replay(seg, last=i == len(self._segments) - 1)
        if not self._segments:
            self._segments = [self._segment_path(1)]
        self._file = open(self._segments[-1], "ab")  # noqa: SIM115 (lives as long as self)
        self._dirty = False

    def _segment_path(self, n: int) -> Path:
        return self.dir / f"log-{n:08d}.seg"

    # ---------------------------------------------------------------- recovery

    def _replay(self, path: Path, last: bool) -> None:
        data = path.read_bytes()
        pos = 0
        while pos < len(data):
            bad = self._bad_record(data, pos)
            if bad is None:
                (n, _) = _HEAD.unpack_from(data, pos)
                payload = data[pos + 8 : pos + 8 + n]
                try:
                    # Our own checksummed record, not a peer's frame: the network's 16 MiB
                    # frame limit does not apply (a region's snapshot is one record and
                    # grows with the fleet; capping it here left a node unable to restart).
                    self.fmt.apply(self.state, decode(payload, max_size=len(payload)))
                except CodecError as e:
                    raise CorruptLogError(f"{path} @ {pos}: undecodable record: {e}") from None
                pos += 8 + n
                continue
            n_end = pos + 8 + (_HEAD.unpack_from(data, pos)[0] if len(data) - pos >= 8 else 0)
            tail_only = n_end >= len(data) or not any(data[pos:])
            if last and tail_only:
                self.torn_bytes = len(data) - pos
                log.warning("%s: torn tail of %d bytes at %d truncated", path, self.torn_bytes, pos)
                with open(path, "r+b") as f:
                    f.truncate(pos)
                    os.fsync(f.fileno())
                return
            raise CorruptLogError(f"{path} @ {pos}: {bad}; refusing to start on a corrupt log")

    @staticmethod
    def _bad_record(data: bytes, pos: int) -> str | None:
        if len(data) - pos < 8:
            return "truncated header"
        n, crc = _HEAD.unpack_from(data, pos)
        if n == 0 or pos + 8 + n > len(data):
            return "truncated record"
        if crc32c.crc32c(data[pos + 8 : pos + 8 + n]) != crc:
            return "checksum mismatch"
        return None

    def load(self) -> Any:
        """What a restarting member is built from (the protocol's recovered state)."""
        return self.fmt.load(self.state)

    def empty(self) -> bool:
        return self.fmt.is_empty(self.state)

    # ---------------------------------------------------------------- writing

    def apply(self, writes: list[Any]) -> None:
        """Append ``writes`` (not yet durable: call :meth:`sync`)."""
        for w in writes:
            self.fmt.apply(self.state, w)
            if self.fmt.compacts(w):
                self._rewrite_base()
            else:
                self._append(w)
        if self._file.tell() > SEGMENT_BYTES:
            self._roll(self._next_segment())

    def _append(self, w: Any) -> None:
        payload = encode(w)
        self._file.write(_HEAD.pack(len(payload), crc32c.crc32c(payload)) + payload)
        self._dirty = True

    def _next_segment(self) -> Path:
        return self._segment_path(int(self._segments[-1].stem.split("-")[1]) + 1)

    def _roll(self, path: Path) -> None:
        self.sync()
        self._file.close()
        self._segments.append(path)
        self._file = open(path, "ab")  # noqa: SIM115
        self._sync_dir()  # the new file's directory entry must survive a crash too

    def _rewrite_base(self) -> None:
        """Compaction: a new segment holding what recreates the state (Raft: the snapshot,
        hard state and retained entries), made durable before the segments it replaces are
        deleted."""
        old = list(self._segments)
        self._roll(self._next_segment())
        for record in self.fmt.base(self.state):
            self._append(record)
        self.sync(force=True)
        for p in old:
            p.unlink(missing_ok=True)
        self._segments = [self._segments[-1]]
        self._sync_dir()

    def sync(self, force: bool = False) -> None:
        if not self._dirty and not force:
            return
        self._file.flush()
        if self.fsync_enabled:
            os.fdatasync(self._file.fileno())
        self._dirty = False

    def _sync_dir(self) -> None:
        if self.fsync_enabled:
            fd = os.open(self.dir, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def close(self) -> None:
        self.sync()
        self._file.close()


__all__ = ["CorruptLogError", "FileStorage"]
