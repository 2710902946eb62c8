"""Taking backups of a running region node: reads the node's commit index over HTTP and its
log from the data dir (the backup runs beside the node, on the same volume, like
CloudNativePG's barman sidecar), and writes what the catalog asks for. Only committed entries
leave: the log may hold a suffix a new leader will overwrite."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from novacron_core.consensus.raft.messages import Entry
from novacron_core.consensus.snapshot_data import snapshot_bytes
from novacron_core.dr import catalog, state
from novacron_core.dr.catalog import FULL, INCR, LOG, ObjectMeta, RestorePlan
from novacron_core.dr.repo import BackupRepo
from novacron_core.dr.source import read_group


class NodeUnreachable(RuntimeError):
    """The node's status could not be read: nothing was written to the target."""


class LogGap(RuntimeError):
    """The node compacted its log past what was shipped: a base backup must come first."""


def node_commit(url: str, timeout: float = 5.0) -> int:
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/v1/cluster", timeout=timeout) as r:
            return int(json.loads(r.read())["commit"])
    except (urllib.error.URLError, OSError, KeyError, ValueError) as e:
        raise NodeUnreachable(f"{url}: cannot read the commit index ({e})") from None


def committed_state(data_dir: Path, commit: int) -> tuple[state.Rebuilt, list[Entry]]:
    """The group's state at ``commit`` as this node's data dir holds it, and the committed
    entries after its snapshot."""
    rec = read_group(data_dir)
    st = state.from_log(
        snapshot_bytes(rec.snap_data), rec.snap.index, rec.snap.term, rec.snap.config
    )
    entries = [e for e in rec.entries if e.index <= commit]
    state.apply_entries(st, entries, commit)
    return st, entries


def _base_state(repo: BackupRepo, objects: list[ObjectMeta], upto: int) -> state.Rebuilt | None:
    """The newest base's state, rebuilt from the target (None: no base, or none older than
    ``upto``: nothing to diff against, or nothing new since)."""
    chains = catalog.bases(objects)
    if not chains or max(chains) >= upto:
        return None
    newest = max(chains)
    return repo.rebuild(RestorePlan(newest, chains[newest], []))


@dataclass(frozen=True)
class Taken:
    meta: ObjectMeta | None  # None: nothing new to back up
    detail: str


def create(repo: BackupRepo, data_dir: Path, commit: int, kind: str, now: float) -> Taken:
    """Take one backup of ``kind`` at the node's ``commit``. A base backup first ships the
    log up to it (when it can), so no index between the last shipment and the base is left
    unrestorable."""
    objects = repo.objects()
    st, entries = committed_state(data_dir, commit)
    if kind == LOG:
        return _ship_log(repo, objects, entries, commit, now)
    if kind not in (FULL, INCR):
        raise ValueError(f"kind {kind!r}: full, incr or log")
    if kind == INCR and not catalog.bases(objects):
        raise LogGap("no full backup yet: an incremental needs one to build on")
    if catalog.bases(objects):
        try:
            shipped = _ship_log(repo, objects, entries, commit, now).meta
        except LogGap:
            shipped = None  # compacted: the base covers it
        if shipped is not None:
            objects = [*objects, shipped]
    root = state.state_root(st.store)
    if kind == FULL:
        meta = repo.put(FULL, state.full_of(st), st.index, st.index, st.term, now, root=root)
        return Taken(meta, f"full backup at index {st.index}")
    old = _base_state(repo, objects, st.index)
    if old is None:
        return Taken(None, f"nothing committed since the last base (index {st.index})")
    delta = state.delta_between(old, st)
    meta = repo.put(INCR, delta, st.index, st.index, st.term, now, parent=old.index, root=root)
    return Taken(meta, f"incremental {old.index}->{st.index}")


def _ship_log(
    repo: BackupRepo, objects: list[ObjectMeta], entries: list[Entry], commit: int, now: float
) -> Taken:
    shipped = max((o.last for o in objects), default=0)
    todo = [e for e in entries if e.index > shipped]
    if not todo:
        if shipped < commit:
            raise LogGap(f"log compacted past index {shipped}: take a base backup")
        return Taken(None, f"log shipped up to {shipped} already")
    first, last = todo[0].index, todo[-1].index
    if first != shipped + 1:
        raise LogGap(
            f"log compacted: it starts at {first}, shipped up to {shipped}; take a base backup"
        )
    meta = repo.put(LOG, state.encode_chunk(todo), first, last, todo[-1].term, now)
    return Taken(meta, f"log {first}..{last}")
