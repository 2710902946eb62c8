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
    st = state.from_log(rec.snap_data, rec.snap.index, rec.snap.term, rec.snap.config)
    entries = [e for e in rec.entries if e.index <= commit]
    state.apply_entries(st, entries, commit)
    return st, entries


def _base_state(repo: BackupRepo, objects: list[ObjectMeta]) -> state.Rebuilt | None:
    chains = catalog.bases(objects)
    if not chains:
        return None
    newest = max(chains)
    return repo.rebuild(RestorePlan(newest, chains[newest], []))


@dataclass(frozen=True)
class Taken:
    meta: ObjectMeta | None  # None: nothing new to back up
    detail: str


def create(repo: BackupRepo, data_dir: Path, commit: int, kind: str, now: float) -> Taken:
    objects = repo.objects()
    st, entries = committed_state(data_dir, commit)
    if kind == FULL:
        meta = repo.put(
            FULL,
            state.full_of(st),
            st.index,
            st.index,
            st.term,
            now,
            root=state.state_root(st.store),
        )
        return Taken(meta, f"full backup at index {st.index}")
    if kind == INCR:
        old = _base_state(repo, objects)
        if old is None:
            raise LogGap("no full backup yet: an incremental needs one to build on")
        if old.index >= st.index:
            return Taken(None, f"nothing committed since the last base at {old.index}")
        meta = repo.put(
            INCR,
            state.delta_between(old, st),
            st.index,
            st.index,
            st.term,
            now,
            parent=old.index,
            root=state.state_root(st.store),
        )
        return Taken(meta, f"incremental {old.index}->{st.index}")
    if kind == LOG:
        shipped = max((o.last for o in objects), default=0)
        todo = [e for e in entries if e.index > shipped]
        if not todo:
            if shipped < commit:
                raise LogGap(f"log compacted past index {shipped}: take a base backup")
            return Taken(None, f"log shipped up to {shipped} already")
        first, last = todo[0].index, todo[-1].index
        if first != shipped + 1:
            raise LogGap(f"log starts at {first}, shipped up to {shipped}: take a base backup")
        payload = state.encode_chunk(todo)
        meta = repo.put(LOG, payload, first, last, todo[-1].term, now)
        return Taken(meta, f"log {first}..{last}")
    raise ValueError(f"kind {kind!r}: full, incr or log")
