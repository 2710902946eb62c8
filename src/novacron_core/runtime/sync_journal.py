"""A sync replica's durable state on disk: a snapshot file plus an append-only journal.

The same entries as :class:`~novacron_core.sync.persist.MemoryDurable` (what the simulator
keeps), length-prefixed msgpack in ``journal``; a ``("snap", bytes)`` entry rewrites
``snapshot`` (fsynced, then renamed) and starts a new journal.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Any

import msgpack

from novacron_core.codec import decode, encode
from novacron_core.sync.messages import Update
from novacron_core.sync.persist import MemoryDurable

_LEN = struct.Struct(">I")


class DiskDurable(MemoryDurable):
    """Snapshot file + append-only journal in ``directory``.

    ``fsync``: ``"always"`` (fsync every apply: RPO 0 for acknowledged writes), ``"never"``
    (leave it to the OS; a crash can lose the tail, which anti-entropy then repairs from peers)
    except when the machine asks for it (``apply(writes, sync=True)`` for ``Ready.sync``, e.g.
    the epoch bump at start). Callers may also call :meth:`fsync` (batched group commit).
    """

    def __init__(self, directory: str | os.PathLike[str], fsync: str = "always") -> None:
        super().__init__()
        if fsync not in ("always", "never"):
            raise ValueError("fsync is 'always' or 'never'")
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.fsync_policy = fsync
        self._snap = self.dir / "snapshot"
        self._log = self.dir / "journal"
        self._load()
        self._file = open(self._log, "ab")  # noqa: SIM115 - lives as long as the object

    def _load(self) -> None:
        if self._snap.exists():
            self.snapshot = self._snap.read_bytes()
        if not self._log.exists():
            return
        data = self._log.read_bytes()
        pos = 0
        while pos + 4 <= len(data):
            (n,) = _LEN.unpack_from(data, pos)
            if pos + 4 + n > len(data):
                break  # a torn tail write: everything before it is intact
            kind, body = msgpack.unpackb(data[pos + 4 : pos + 4 + n], raw=False)
            self.journal.append((kind, decode(body, Update) if kind == "u" else body))
            pos += 4 + n
        if pos < len(data):
            with open(self._log, "r+b") as f:
                f.truncate(pos)

    def apply(self, writes: list[Any], sync: bool = False) -> None:
        for w in writes:
            if w[0] == "snap":
                self._write_snapshot(w[1])
                self.snapshot, self.journal = w[1], []
                continue
            body = encode(w[1]) if w[0] == "u" else w[1]
            payload = msgpack.packb([w[0], body], use_bin_type=True)
            self._file.write(_LEN.pack(len(payload)) + payload)
            self.journal.append(w)
        self._file.flush()
        if sync or self.fsync_policy == "always":
            os.fsync(self._file.fileno())

    def fsync(self) -> None:
        self._file.flush()
        os.fsync(self._file.fileno())

    def _write_snapshot(self, blob: bytes) -> None:
        tmp = self.dir / "snapshot.tmp"
        with open(tmp, "wb") as f:
            f.write(blob)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self._snap)
        self._file.close()
        self._file = open(self._log, "wb")  # noqa: SIM115 - the snapshot covers the old journal
        dfd = os.open(self.dir, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)

    def close(self) -> None:
        self._file.close()
