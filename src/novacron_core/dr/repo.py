"""A group's backups in one target: sealed objects and their descriptions, read and written
through the catalog's names. The I/O half of :mod:`.catalog`."""

from __future__ import annotations

from collections.abc import Callable

from novacron_core.dr import catalog, crypto, state
from novacron_core.dr.catalog import FULL, INCR, LOG, ObjectMeta, RestorePlan
from novacron_core.dr.targets import Target

Progress = Callable[[int], None]  # bytes moved since the last call


class BackupRepo:
    def __init__(self, target: Target, group: str, key: bytes | None) -> None:
        if not group or "/" in group or group.startswith("."):
            raise ValueError(f"group name {group!r}: a plain name (no '/')")
        self.target, self.group, self.key = target, group, key

    def objects(self) -> list[ObjectMeta]:
        out = []
        for name in self.target.list(f"{self.group}/"):
            if name.endswith(catalog.META_SUFFIX):
                out.append(ObjectMeta.from_json(self.target.get(name)))
        return sorted(out, key=lambda o: (o.last, o.kind))

    def put(
        self,
        kind: str,
        payload: bytes,
        first: int,
        last: int,
        term: int,
        now: float,
        parent: int = 0,
        root: str = "",
    ) -> ObjectMeta:
        key = catalog.object_key(self.group, kind, first, last, parent)
        stored = crypto.seal(self.key, key, payload)
        meta = ObjectMeta(
            key=key,
            kind=kind,
            first=first,
            last=last,
            term=term,
            shipped_at=now,
            sha256=crypto.checksum(stored),
            size=len(stored),
            encrypted=self.key is not None,
            parent=parent,
            root=root,
        )
        self.target.put(key, stored)
        # the description last: an object without one is invisible, never half-listed
        self.target.put(key + catalog.META_SUFFIX, meta.to_json())
        return meta

    def fetch(self, meta: ObjectMeta) -> bytes:
        return crypto.open_sealed(self.key, meta.key, self.target.get(meta.key), meta.sha256)

    def delete(self, meta: ObjectMeta) -> None:
        self.target.delete(meta.key + catalog.META_SUFFIX)
        self.target.delete(meta.key)

    def rebuild(self, p: RestorePlan, progress: Progress | None = None) -> state.Rebuilt:
        """The state at ``p.index``, each object checked (checksum, key, chain order), and the
        base's state against the Merkle root recorded when it was taken."""
        rebuilt: state.Rebuilt | None = None
        for meta in p.objects:
            payload = self.fetch(meta)
            if meta.kind == FULL:
                rebuilt = state.from_full(payload)
            elif rebuilt is None:
                raise ValueError("a plan must start with a full backup")
            elif meta.kind == INCR:
                state.apply_delta(rebuilt, payload)
            elif meta.kind == LOG:
                state.apply_log(rebuilt, payload, p.index)
            if meta is p.base[-1] and meta.root:
                rebuilt.root = state.state_root(rebuilt.store)
                if rebuilt.root != meta.root:
                    raise crypto.IntegrityError(f"{meta.key}: state differs from its Merkle root")
            elif meta.kind == LOG:
                rebuilt.root = ""
            if progress:
                progress(meta.size)
        assert rebuilt is not None
        if rebuilt.index != p.index:
            raise ValueError(f"rebuilt state reached {rebuilt.index}, not {p.index}")
        return rebuilt
