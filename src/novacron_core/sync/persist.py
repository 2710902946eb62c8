"""Durable state of a sync node: a snapshot plus a journal of entries written since.

Entries are plain tuples: ``("epoch", n)``, ``("u", Update)``, ``("snap", bytes)``; a
snapshot entry replaces everything before it. :class:`MemoryDurable` is what the simulator
keeps; the runtime keeps the same thing in a directory
(:class:`novacron_core.runtime.sync_journal.DiskDurable`): no disk I/O in ``sync/``.
"""

from __future__ import annotations

from typing import Any


class MemoryDurable:
    """What survives a crash, for the simulator (it applies only synced writes)."""

    def __init__(self) -> None:
        self.snapshot: bytes | None = None
        self.journal: list[tuple[str, Any]] = []

    def apply(self, writes: list[Any]) -> None:
        for w in writes:
            if w[0] == "snap":
                self.snapshot, self.journal = w[1], []
            else:
                self.journal.append(w)
