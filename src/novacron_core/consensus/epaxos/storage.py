"""What an EPaxos replica asks the disk to keep, and an in-memory :class:`Durable` for the
simulator.

Two write records: :class:`~.messages.InstanceState` (an instance's whole state, replacing
the one stored before: ballots, status, command, attributes) and :class:`SaveSnapshot` (the
state machine after a set of executed instances, and the compaction horizon: instances at or
below it were executed by every replica and are dropped). The runtime's file log
(``runtime/storage.py``) appends the same records and replays them through
:class:`EPaxosLogFormat`; a snapshot rewrites the log (it supersedes what it covers).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from novacron_core.codec import record
from novacron_core.consensus.epaxos.messages import Deps, InstanceState
from novacron_core.consensus.interface import MemberAddress


@record(392)
@dataclass(frozen=True, slots=True)
class SnapshotMeta:
    """``upto``/``extra``: the executed instances the state covers (all up to ``upto[r]``,
    and ``extra[r]`` above it); ``horizon``: per owner, instances at or below it are gone
    (executed everywhere); ``next_num``: this replica's next instance number (never reused);
    ``count``: instances executed to reach this state (the index of the last); ``voters``
    and ``addresses``: the replica set, fixed when the group was founded (the first
    snapshot records it, so a restart does not depend on the static peer list)."""

    upto: Deps = field(default_factory=dict)
    extra: dict[str, list[int]] = field(default_factory=dict)
    horizon: Deps = field(default_factory=dict)
    next_num: int = 1
    count: int = 0
    voters: tuple[str, ...] = ()
    addresses: tuple[MemberAddress, ...] = ()


@record(393)
@dataclass(frozen=True, slots=True)
class SaveSnapshot:
    meta: SnapshotMeta
    data: bytes


@dataclass
class Recovered:
    meta: SnapshotMeta = field(default_factory=SnapshotMeta)
    data: bytes = b""
    instances: dict[tuple[str, int], InstanceState] = field(default_factory=dict)


def apply_write(state: Recovered, w: Any) -> None:
    """The one definition of what each write means, shared by every storage backend."""
    if isinstance(w, InstanceState):
        if w.num > state.meta.horizon.get(w.owner, 0):
            state.instances[(w.owner, w.num)] = w
    elif isinstance(w, SaveSnapshot):
        state.meta, state.data = w.meta, w.data
        h = w.meta.horizon
        state.instances = {k: v for k, v in state.instances.items() if k[1] > h.get(k[0], 0)}
    else:
        raise TypeError(f"not an epaxos write: {w!r}")


class MemoryStorage:
    """Durable state that survives a simulated crash (the simulator applies synced writes)."""

    def __init__(self) -> None:
        self.state = Recovered()

    def apply(self, writes: list[Any]) -> None:
        for w in writes:
            apply_write(self.state, w)

    def load(self) -> Recovered:
        s = self.state
        return Recovered(s.meta, s.data, dict(s.instances))


class EPaxosLogFormat:
    """EPaxos's write records for the runtime's file log (the interface's ``LogFormat``)."""

    def new_state(self) -> Recovered:
        return Recovered()

    def apply(self, state: Recovered, write: Any) -> None:
        apply_write(state, write)

    def compacts(self, write: Any) -> bool:
        return isinstance(write, SaveSnapshot)

    def base(self, state: Recovered) -> list[Any]:
        out: list[Any] = [SaveSnapshot(state.meta, state.data)]
        out.extend(state.instances[k] for k in sorted(state.instances))
        return out

    def load(self, state: Recovered) -> Recovered:
        return Recovered(state.meta, state.data, dict(state.instances))

    def is_empty(self, state: Recovered) -> bool:
        return not state.instances and not state.meta.voters and state.meta.count == 0
