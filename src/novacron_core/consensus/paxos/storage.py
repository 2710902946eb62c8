"""What a Multi-Paxos member asks the disk to keep, and an in-memory :class:`Durable` for
the simulator.

An acceptor's promise and its accepted values are what Paxos's safety rests on, so both are
written with ``sync`` before any message that relies on them leaves (a Promise, an
Accepted). The chosen prefix (``Commit``) and learned values need no fsync: lost, they are
learned again. The runtime's file log appends these records and replays them through
:class:`PaxosLogFormat`, so the simulator and a real node recover through one code path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from novacron_core.codec import record
from novacron_core.consensus.paxos.messages import ZERO, Ballot, Slot, SnapshotMeta


@record(425)
@dataclass(frozen=True, slots=True)
class Promised:
    """The acceptor accepts nothing below ``ballot`` any more."""

    ballot: Ballot


@record(426)
@dataclass(frozen=True, slots=True)
class Accepts:
    """Slots accepted (or learned chosen): each replaces what was held at its index."""

    slots: list[Slot]


@record(427)
@dataclass(frozen=True, slots=True)
class Commit:
    """Every slot up to ``index`` is chosen (with the value held for it)."""

    index: int


@record(428)
@dataclass(frozen=True, slots=True)
class SaveSnapshot:
    """The state machine after ``meta.index``: the slots up to it are no longer kept."""

    meta: SnapshotMeta
    data: bytes


@dataclass
class Recovered:
    promised: Ballot = ZERO
    snap: SnapshotMeta = field(default_factory=SnapshotMeta)
    snap_data: bytes = b""
    slots: dict[int, Slot] = field(default_factory=dict)
    commit: int = 0


def apply_write(state: Recovered, w: Any) -> None:
    """The one definition of what each write means, shared by every storage backend."""
    if isinstance(w, Promised):
        state.promised = max(state.promised, w.ballot)
    elif isinstance(w, Accepts):
        for s in w.slots:
            if s.index > state.snap.index:
                state.slots[s.index] = s
    elif isinstance(w, Commit):
        state.commit = max(state.commit, w.index)
    elif isinstance(w, SaveSnapshot):
        if w.meta.index <= state.snap.index:
            return
        state.snap, state.snap_data = w.meta, w.data
        state.slots = {i: s for i, s in state.slots.items() if i > w.meta.index}
        state.commit = max(state.commit, w.meta.index)
    else:
        raise TypeError(f"not a multi-paxos write: {w!r}")


def _copy(s: Recovered) -> Recovered:
    return Recovered(s.promised, s.snap, s.snap_data, dict(s.slots), s.commit)


class MemoryStorage:
    """Durable state that survives a simulated crash (the simulator applies synced writes)."""

    def __init__(self) -> None:
        self.state = Recovered()

    def apply(self, writes: list[Any]) -> None:
        for w in writes:
            apply_write(self.state, w)

    def load(self) -> Recovered:
        return _copy(self.state)


class PaxosLogFormat:
    """Multi-Paxos's write records for the runtime's file log (the interface's
    ``LogFormat``)."""

    def new_state(self) -> Recovered:
        return Recovered()

    def apply(self, state: Recovered, write: Any) -> None:
        apply_write(state, write)

    def compacts(self, write: Any) -> bool:
        return isinstance(write, SaveSnapshot)

    def base(self, state: Recovered) -> list[Any]:
        out: list[Any] = [SaveSnapshot(state.snap, state.snap_data), Promised(state.promised)]
        if state.slots:
            out.append(Accepts([state.slots[i] for i in sorted(state.slots)]))
        out.append(Commit(state.commit))
        return out

    def load(self, state: Recovered) -> Recovered:
        return _copy(state)

    def is_empty(self, state: Recovered) -> bool:
        """No promise, no slots, no snapshot."""
        return state.promised == ZERO and not state.slots and state.snap.index == 0
