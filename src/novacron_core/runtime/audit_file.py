"""The conflict engine's audit trail on disk: one JSON object per line, append-only.

Events are appended as the region machine hands them over (``Ready.writes`` tagged
``CONFLICT``) and fsynced with the batch that produced them when the batch asks for it
(``RegionStorage.sync``). A torn last line (a crash mid-write) is cut on load; every line
before it is intact. The file is never rewritten: an entry's later states are later lines.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from novacron_core.conflict.audit import AUDIT


class AuditFile:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self.events: list[dict[str, Any]] = []
        self._load()
        self._file = open(path, "ab")  # noqa: SIM115 - lives as long as the object
        self.dirty = False

    def _load(self) -> None:
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        good = 0
        for line in data.splitlines(keepends=True):
            if not line.endswith(b"\n"):
                break
            try:
                ev = json.loads(line)
            except ValueError:
                break
            if isinstance(ev, dict):
                self.events.append(ev)
            good += len(line)
        if good < len(data):
            with open(self.path, "r+b") as f:
                f.truncate(good)

    def apply(self, writes: list[Any]) -> None:
        for kind, body in writes:
            if kind != AUDIT:
                continue
            self._file.write(json.dumps(body, sort_keys=True).encode() + b"\n")
            self.events.append(body)
            self.dirty = True
        self._file.flush()

    def fsync(self) -> None:
        self._file.flush()
        os.fsync(self._file.fileno())
        self.dirty = False

    def close(self) -> None:
        self._file.close()
