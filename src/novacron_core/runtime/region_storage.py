"""The files of a region node: its consensus member's log, its federation replica's
journal and its conflict audit trail, behind the one ``apply``/``sync`` the driver calls.

The region machine tags every write with the part it belongs to (``region.machine.GROUP`` /
``REPLICA``); ``sync`` (a Ready that must be durable before its messages leave) fsyncs
whichever of the two files took writes since the last one, so a batch that only the group
wrote costs the group's fdatasync alone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from novacron_core.consensus.interface import LogFormat
from novacron_core.region.machine import route
from novacron_core.runtime.audit_file import AuditFile
from novacron_core.runtime.storage import FileStorage
from novacron_core.runtime.sync_journal import DiskDurable


def foreign_logs(data_dir: Path, mine: str, protocols: list[str]) -> list[str]:
    """The other protocols whose group log (a directory named after the protocol) holds
    records in ``data_dir``: a node configured for ``mine`` over one of them would start an
    empty group beside the state it should have (a switch is agreed, never a restart). Empty
    segments hold no state (a node that stopped on a bad setting right after opening its log
    leaves one): they do not count."""
    return [p for p in protocols if p != mine and _holds_records(data_dir / p)]


def _holds_records(log_dir: Path) -> bool:
    return log_dir.is_dir() and any(f.is_file() and f.stat().st_size > 0 for f in log_dir.iterdir())


class RegionStorage:
    def __init__(self, data_dir: Path, group_dir: str, fmt: LogFormat, fsync: bool) -> None:
        self.group = FileStorage(data_dir / group_dir, fmt, fsync)
        self.replica = DiskDurable(data_dir / "sync", fsync="never")
        self.audit = AuditFile(data_dir / "conflicts" / "audit.jsonl")
        self.fsync = fsync
        self._replica_dirty = False

    def apply(self, writes: list[Any]) -> None:
        route(writes, self.group.apply, self._replica_apply, self.audit.apply)

    def _replica_apply(self, writes: list[Any]) -> None:
        self.replica.apply(writes)
        self._replica_dirty = True

    def sync(self) -> None:
        self.group.sync()
        if self._replica_dirty:
            self._replica_dirty = False
            if self.fsync:
                self.replica.fsync()
        if self.audit.dirty and self.fsync:
            self.audit.fsync()

    def close(self) -> None:
        self.group.close()
        if self.fsync:
            self.replica.fsync()
        self.replica.close()
        if self.fsync:
            self.audit.fsync()
        self.audit.close()
