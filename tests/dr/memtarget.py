"""An in-memory object store for the pure catalog/state properties (the real targets, a
directory and a MinIO server, are tested in test_targets.py and test_processes.py)."""

from __future__ import annotations

from novacron_core.dr.targets import TargetError


class MemTarget:
    url = "mem://"

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}

    def put(self, key: str, data: bytes) -> None:
        self.objects[key] = data

    def get(self, key: str) -> bytes:
        if key not in self.objects:
            raise TargetError(key)
        return self.objects[key]

    def list(self, prefix: str) -> list[str]:
        return sorted(k for k in self.objects if k.startswith(prefix))

    def delete(self, key: str) -> None:
        self.objects.pop(key, None)
