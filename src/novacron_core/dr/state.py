"""The contents of backup objects and the state they recreate (sans-IO).

A base object carries the group's state machine snapshot (the region's KV/VM store, the same
bytes a Raft snapshot holds); an incremental the keys and client sessions that changed since
its parent; a log chunk committed entries. :func:`state_root` is the Merkle root a restore
checks: the sync package's Merkle index over every key's value, folded into one hash.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from hashlib import blake2b

from novacron_core.codec import decode, encode, record
from novacron_core.consensus.interface import COMMAND, CONFIG, ConfigState
from novacron_core.consensus.kv import KVSnapshot, KVStore, Session
from novacron_core.consensus.raft.messages import Entry
from novacron_core.sync.merkle import MerkleIndex


@record(500)
@dataclass(frozen=True, slots=True)
class FullState:
    index: int
    term: int
    config: ConfigState
    snapshot: bytes  # KVStore.snapshot()


@record(501)
@dataclass(frozen=True, slots=True)
class Delta:
    index: int
    term: int
    parent: int
    config: ConfigState
    put: dict[str, bytes] = field(default_factory=dict)
    deleted: list[str] = field(default_factory=list)
    sessions: dict[str, Session] = field(default_factory=dict)
    dropped_sessions: list[str] = field(default_factory=list)


@record(502)
@dataclass(frozen=True, slots=True)
class LogChunk:
    entries: list[Entry]


@dataclass
class Rebuilt:
    """A state being rebuilt from a chain of objects."""

    store: KVStore
    index: int = 0
    term: int = 0
    config: ConfigState = field(default_factory=ConfigState)
    root: str = ""  # the Merkle root of ``store`` when known (cleared by any change)


def state_root(store: KVStore) -> str:
    """A Merkle root over every key and its value (sessions are bookkeeping, not state)."""
    idx = MerkleIndex(lambda k: store.data.get(k, b""))
    for k in store.data:
        idx.touch(k)
    h = blake2b(digest_size=16)
    for r in idx.range_hashes():
        h.update(r.to_bytes(8, "big"))
    h.update(len(store.data).to_bytes(8, "big"))
    return h.hexdigest()


def from_full(payload: bytes) -> Rebuilt:
    full = decode(payload, FullState)
    store = KVStore()
    store.restore(full.snapshot)
    return Rebuilt(store, full.index, full.term, full.config)


def apply_delta(state: Rebuilt, payload: bytes) -> None:
    d = decode(payload, Delta)
    if d.parent != state.index:
        raise ValueError(f"incremental from {d.parent} applied on a state at {state.index}")
    snap = decode(state.store.snapshot(), KVSnapshot)
    data = {k: v for k, v in snap.data.items() if k not in d.deleted}
    data.update(d.put)
    sessions = {k: v for k, v in snap.sessions.items() if k not in d.dropped_sessions}
    sessions.update(d.sessions)
    state.store.restore(encode(KVSnapshot(data, sessions, d.index)))
    state.index, state.term, state.config = d.index, d.term, d.config
    state.root = ""


def apply_entries(state: Rebuilt, entries: list[Entry], upto: int) -> None:
    """Apply committed entries after the state's index, up to ``upto``."""
    for e in entries:
        if e.index <= state.index:
            continue
        if e.index > upto:
            return
        if e.index != state.index + 1:
            raise ValueError(f"log gap: entry {e.index} after state at {state.index}")
        if e.kind == COMMAND and e.data:
            state.store.apply(e.index, e.data)
        elif e.kind == CONFIG:
            state.config = decode(e.data, ConfigState)
        state.index, state.term, state.root = e.index, e.term, ""


def encode_chunk(entries: list[Entry]) -> bytes:
    return encode(LogChunk(entries))


def apply_log(state: Rebuilt, payload: bytes, upto: int) -> None:
    chunk = decode(payload, LogChunk)
    apply_entries(state, chunk.entries, upto)


def from_log(snap_data: bytes, snap_index: int, snap_term: int, config: ConfigState) -> Rebuilt:
    """The state a Raft snapshot holds (where a node's log starts)."""
    store = KVStore()
    if snap_data:
        store.restore(snap_data)
    return Rebuilt(store, snap_index, snap_term, config)


def full_of(state: Rebuilt) -> bytes:
    return encode(FullState(state.index, state.term, state.config, state.store.snapshot()))


def delta_between(old: Rebuilt, new: Rebuilt) -> bytes:
    a = decode(old.store.snapshot(), KVSnapshot)
    b = decode(new.store.snapshot(), KVSnapshot)
    return encode(
        Delta(
            index=new.index,
            term=new.term,
            parent=old.index,
            config=new.config,
            put={k: v for k, v in b.data.items() if a.data.get(k) != v},
            deleted=sorted(k for k in a.data if k not in b.data),
            sessions={k: v for k, v in b.sessions.items() if a.sessions.get(k) != v},
            dropped_sessions=sorted(k for k in a.sessions if k not in b.sessions),
        )
    )
