"""What Raft asks the disk to keep, and an in-memory :class:`Durable` for the simulator.

The runtime's file log (``runtime/storage.py``) appends the same three write records and
replays them through :class:`RaftLogFormat`, so the simulator and the real node recover
through one code path (:func:`apply_write`, then ``RaftNode``'s init).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from novacron_core.codec import record
from novacron_core.consensus.raft.messages import Entry, SnapshotMeta
from novacron_core.consensus.snapshot_data import Deferred, SnapshotData


@record(200)
@dataclass(frozen=True, slots=True)
class HardState:
    term: int
    vote: str | None


@record(201)
@dataclass(frozen=True, slots=True)
class AppendEntries:
    """Append, truncating any stored suffix from ``entries[0].index`` first."""

    entries: list[Entry]


@record(202)
@dataclass(frozen=True, slots=True)
class SaveSnapshot:
    """Replace the log prefix up to ``meta.index`` (keeping a matching suffix)."""

    meta: SnapshotMeta
    data: bytes


@dataclass(frozen=True, slots=True)
class SaveCapturedSnapshot:
    """A :class:`SaveSnapshot` whose data is encoded later (not a wire record: what the
    disk gets is the ``SaveSnapshot`` :meth:`resolve` makes, in the storage's thread)."""

    meta: SnapshotMeta
    data: Deferred

    def resolve(self) -> SaveSnapshot:
        return SaveSnapshot(self.meta, self.data.data())


@dataclass
class Recovered:
    hard: HardState = field(default_factory=lambda: HardState(0, None))
    snap: SnapshotMeta = field(default_factory=SnapshotMeta)
    snap_data: SnapshotData = b""
    entries: list[Entry] = field(default_factory=list)


def apply_write(state: Recovered, w: Any) -> None:
    """The one definition of what each write means, shared by every storage backend."""
    if isinstance(w, HardState):
        state.hard = w
    elif isinstance(w, AppendEntries):
        if not w.entries:
            return
        cut = w.entries[0].index - state.snap.index - 1
        if cut < 0:  # entries already covered by the snapshot: skip them
            w = AppendEntries([e for e in w.entries if e.index > state.snap.index])
            cut = 0
            if not w.entries:
                return
        del state.entries[cut:]
        state.entries.extend(w.entries)
    elif isinstance(w, SaveSnapshot | SaveCapturedSnapshot):
        meta = w.meta
        if meta.index <= state.snap.index:
            return
        off = meta.index - state.snap.index - 1
        if off < len(state.entries) and state.entries[off].term == meta.term:
            del state.entries[: off + 1]
        else:
            state.entries = []
        state.snap, state.snap_data = meta, w.data
    else:
        raise TypeError(f"not a raft write: {w!r}")


class MemoryStorage:
    """Durable state that survives a simulated crash (the simulator applies synced writes)."""

    def __init__(self) -> None:
        self.state = Recovered()

    def apply(self, writes: list[Any]) -> None:
        for w in writes:
            apply_write(self.state, w)

    def load(self) -> Recovered:
        s = self.state
        return Recovered(s.hard, s.snap, s.snap_data, list(s.entries))


class RaftLogFormat:
    """Raft's write records for the runtime's file log (the interface's ``LogFormat``)."""

    def new_state(self) -> Recovered:
        return Recovered()

    def apply(self, state: Recovered, write: Any) -> None:
        apply_write(state, write)

    def compacts(self, write: Any) -> bool:
        return isinstance(write, SaveSnapshot | SaveCapturedSnapshot)

    def base(self, state: Recovered) -> list[Any]:
        data = state.snap_data
        snap = (
            SaveCapturedSnapshot(state.snap, data)
            if isinstance(data, Deferred)
            else SaveSnapshot(state.snap, data)
        )
        out: list[Any] = [snap, state.hard]
        if state.entries:
            out.append(AppendEntries(list(state.entries)))
        return out

    def load(self, state: Recovered) -> Recovered:
        return Recovered(state.hard, state.snap, state.snap_data, list(state.entries))

    def is_empty(self, state: Recovered) -> bool:
        """No term or vote, no entries, no snapshot."""
        hard = state.hard
        return hard.term == 0 and hard.vote is None and not state.entries and state.snap.index == 0
