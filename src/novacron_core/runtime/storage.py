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

Compaction runs in a thread (one at a time, in order): appends go on in a new segment
while the rewritten start of the log is written to the segment numbered before it (as a
``.tmp`` file, renamed once durable), and only then are the replaced segments deleted. So at
any moment the segments on disk replay to the state: the old ones plus the new appends, or
(after the rename) the rewritten start replayed after the old ones — a snapshot record keeps
the entries after it, and the retained entries it is followed by are the same as before. A
compaction whose records are not encoded yet (a snapshot taken but not encoded,
``consensus/snapshot_data.py``) is encoded in that thread too, and :meth:`FileStorage.sync`
does not wait for it (the log it replaces is durable); any other compaction (a snapshot a
follower installs) is durable when ``sync`` returns, as every write is.

Recovery: a bad record at the very end of the newest segment is a torn write (the process
died mid-append): it is cut off and reported. A bad record with valid data after it, or in
an older segment, is corruption: the node refuses to start rather than serve wrong data.
"""

from __future__ import annotations

import logging
import os
import struct
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import crc32c

from novacron_core.codec import CodecError, decode, encode, encode_parts
from novacron_core.consensus.interface import LogFormat

log = logging.getLogger(__name__)
_HEAD = struct.Struct(">II")
SEGMENT_BYTES = 64 << 20


@runtime_checkable
class Resolvable(Protocol):
    """A write record whose bytes are made later: ``resolve()`` is the record to write."""

    def resolve(self) -> Any: ...


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
        for tmp in self.dir.glob("log-*.tmp"):
            tmp.unlink()  # a compaction that did not finish: the segments it replaces remain
        self._segments = sorted(self.dir.glob("log-*.seg"))
        for i, seg in enumerate(self._segments):
            self._replay(seg, last=i == len(self._segments) - 1)
        if not self._segments:
            self._segments = [self._segment_path(1)]
        self._file = open(self._segments[-1], "ab")  # noqa: SIM115 (lives as long as self)
        self._dirty = False
        self._compactor = ThreadPoolExecutor(1, thread_name_prefix="log-compaction")
        self._compaction: Future[None] | None = None  # the latest one
        self._durable_compaction: Future[None] | None = None  # the latest sync must wait for

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
                self._compact()
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
        self._sync_file()
        self._file.close()
        self._segments.append(path)
        self._file = open(path, "ab")  # noqa: SIM115
        self._sync_dir()  # the new file's directory entry must survive a crash too

    def _compact(self) -> None:
        """A new start of the log holding what recreates the state (Raft: the snapshot, hard
        state and retained entries), written in the compaction thread; appends continue in a
        new segment meanwhile (see the module docstring for why that order is safe)."""
        records = self.fmt.base(self.state)  # immutable: what the state is now
        old = list(self._segments)
        base = self._next_segment()
        self._roll(self._segment_path(int(base.stem.split("-")[1]) + 1))
        self._segments = [base, self._segments[-1]]
        self._check_compaction()
        job = self._compactor.submit(self._write_base, base, records, old)
        self._compaction = job
        if not any(isinstance(r, Resolvable) for r in records):
            self._durable_compaction = job

    def _write_base(self, path: Path, records: list[Any], old: list[Path]) -> None:
        tmp = path.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            for r in records:
                parts = encode_parts(r.resolve() if isinstance(r, Resolvable) else r)
                crc = 0
                for part in parts:
                    crc = crc32c.crc32c(part, crc)
                f.write(_HEAD.pack(sum(len(x) for x in parts), crc))
                for part in parts:
                    f.write(part)  # (a large write releases the GIL; no joined copy)
            f.flush()
            if self.fsync_enabled:
                os.fsync(f.fileno())
        tmp.rename(path)
        self._sync_dir()  # the rename is durable before the replaced segments go
        for p in old:
            p.unlink(missing_ok=True)
        self._sync_dir()

    def _check_compaction(self) -> None:
        """Raise a failed compaction's error (once it is done; never waits)."""
        job = self._compaction
        if job is not None and job.done():
            self._compaction = None
            job.result()

    def wait_compaction(self) -> None:
        """Until every compaction started so far is done (tests; close)."""
        job = self._compaction
        if job is not None:
            job.result()

    def sync(self, force: bool = False) -> None:
        durable = self._durable_compaction
        if durable is not None:
            self._durable_compaction = None
            durable.result()  # (in the driver's fsync thread: the event loop runs on)
        self._check_compaction()
        self._sync_file(force)

    def _sync_file(self, force: bool = False) -> None:
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
        self.wait_compaction()
        self._compactor.shutdown()
        self.sync()
        self._file.close()


__all__ = ["CorruptLogError", "FileStorage"]
