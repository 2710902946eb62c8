"""Restoring a backup into an empty data dir as a new group, and rebuilding a group from the
most up-to-date survivor after it lost its quorum for good.

Both write the same thing: a Raft log holding one snapshot of the state (at the restored index,
with the new group's membership) and a hard state at that term, through the node's own
storage code. Before either says done, the data dir is read back the way a starting node reads
it, and the Merkle root of the state found there must equal the root of the state that was
meant to be written.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from novacron_core.consensus.interface import ConfigState, MemberAddress
from novacron_core.consensus.kv import KVStore
from novacron_core.consensus.raft.messages import SnapshotMeta
from novacron_core.consensus.raft.storage import HardState, RaftLogFormat, SaveSnapshot
from novacron_core.consensus.snapshot_data import snapshot_bytes
from novacron_core.dr import catalog, state
from novacron_core.dr.crypto import IntegrityError
from novacron_core.dr.repo import BackupRepo, Progress
from novacron_core.dr.source import last_index, read_group
from novacron_core.runtime.storage import FileStorage

GROUP_DIR = "raft"


@dataclass(frozen=True)
class Restored:
    index: int
    term: int
    keys: int
    root: str
    data_dir: Path


def membership(members: dict[str, tuple[str, str]]) -> ConfigState:
    """A group's membership from ``{node: (peer host:port, http host:port)}``."""
    return ConfigState(
        voters=tuple(sorted(members)),
        addresses=tuple(MemberAddress(n, p, h) for n, (p, h) in sorted(members.items())),
    )


def write_group(data_dir: Path, st: state.Rebuilt, config: ConfigState, term: int) -> Restored:
    group = Path(data_dir) / GROUP_DIR
    storage = FileStorage(group, RaftLogFormat(), fsync=True)
    try:
        if not storage.empty():
            raise FileExistsError(f"{group}: not empty; restore only into an empty data dir")
        meta = SnapshotMeta(st.index, st.term, config)
        storage.apply([SaveSnapshot(meta, st.store.snapshot()), HardState(term, None)])
        storage.sync(force=True)
    finally:
        storage.close()
    return verify(data_dir, st.index, st.root or state.state_root(st.store))


def verify(data_dir: Path, index: int, root: str) -> Restored:
    """Read the data dir back as a node would and check the state's Merkle root."""
    rec = read_group(data_dir)
    store = KVStore()
    store.restore(snapshot_bytes(rec.snap_data))
    got = state.state_root(store)
    if rec.snap.index != index or got != root:
        raise IntegrityError(
            f"{data_dir}: wrote state at {index} with root {root}, "
            f"read back {rec.snap.index} with root {got}"
        )
    return Restored(index, rec.hard.term, len(store.data), got, Path(data_dir))


def restore(
    repo: BackupRepo,
    data_dir: Path,
    members: dict[str, tuple[str, str]],
    index: int | None = None,
    at_time: float | None = None,
    progress: Progress | None = None,
) -> Restored:
    objects = repo.objects()
    if at_time is not None:
        index = catalog.index_at(objects, at_time)
    plan = catalog.plan(objects, index)
    st = repo.rebuild(plan, progress)
    return write_group(data_dir, st, membership(members), st.term)


@dataclass(frozen=True)
class Survivor:
    data_dir: Path
    last_index: int
    last_term: int


def survey(data_dirs: list[Path]) -> list[Survivor]:
    """The survivors' logs, most up to date first (Raft's order: last term, then index)."""
    out = []
    for d in data_dirs:
        i, t = last_index(read_group(d))
        out.append(Survivor(Path(d), i, t))
    return sorted(out, key=lambda s: (s.last_term, s.last_index), reverse=True)


def loss_window(last_known: int | None, survivor: Survivor) -> str:
    if last_known is None:
        return (
            f"the survivor holds entries up to {survivor.last_index}; the group's last commit "
            "index is unknown (pass --last-known-index or --target), so anything committed "
            "after that is lost without a count"
        )
    lost = last_known - survivor.last_index
    if lost <= 0:
        return (
            f"no committed entry is lost: last known index {last_known}, "
            f"the survivor holds up to {survivor.last_index}"
        )
    return (
        f"{lost} committed entries are lost: indexes {survivor.last_index + 1}..{last_known} "
        f"(last known {last_known}, the survivor holds up to {survivor.last_index})"
    )


@dataclass(frozen=True)
class Forced:
    """What force-new-group will write, prepared before anything is changed."""

    survivor: Survivor
    state: state.Rebuilt
    term: int
    config: ConfigState


def prepare_force(survivor: Survivor, node_id: str, address: tuple[str, str] | None) -> Forced:
    """The one-member group of ``node_id`` holding every entry of ``survivor``'s log (etcd's
    --force-new-cluster: entries it holds beyond the old commit index commit too)."""
    rec = read_group(survivor.data_dir)
    st = state.from_log(
        snapshot_bytes(rec.snap_data), rec.snap.index, rec.snap.term, rec.snap.config
    )
    state.apply_entries(st, rec.entries, survivor.last_index)
    addr = address or _address_of(st.config, node_id)
    if addr is None:
        raise ValueError(
            f"{node_id} has no address in the old membership: pass --peers (as the node "
            "takes it) or --peer and --http"
        )
    return Forced(survivor, st, max(rec.hard.term, st.term), membership({node_id: addr}))


def force_new_group(forced: Forced) -> Restored:
    """Write the prepared group; the old log is kept beside the new one
    (``raft.before-force-new-group-<index>``)."""
    d = forced.survivor.data_dir
    kept = d / f"{GROUP_DIR}.before-force-new-group-{forced.survivor.last_index}"
    if kept.exists():
        shutil.rmtree(kept)
    (d / GROUP_DIR).rename(kept)
    return write_group(d, forced.state, forced.config, forced.term)


def _address_of(config: ConfigState, node: str) -> tuple[str, str] | None:
    a = config.address(node)
    return (a.peer, a.http) if a else None
