"""The state every part of an EPaxos replica shares, and the plumbing of one step.

:class:`~.replica.EPaxosReplica` is assembled from one class per concern, each building on
the one before: :class:`ReplicaState` (this module: fields, a step's beginning and end,
changing an instance), :class:`~.acceptor.Acceptor` (answering PreAccept, Accept, Commit,
Prepare, Fetch), :class:`~.leader.Leader` (proposing, the fast and slow paths, Explicit
Prepare) and ``EPaxosReplica`` itself (the Machine interface, timers, status).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from novacron_core.consensus.epaxos.config import EPaxosConfig
from novacron_core.consensus.epaxos.conflicts import Conflicts
from novacron_core.consensus.epaxos.execution import Executor
from novacron_core.consensus.epaxos.messages import (
    COMMITTED,
    Command,
    Commit,
    Deps,
    PreAcceptOK,
    PrepareOK,
)
from novacron_core.consensus.epaxos.space import Inst, Space
from novacron_core.consensus.interface import ConfigState, StateMachine
from novacron_core.machine import NodeId, Ready

PREACCEPT_PHASE, ACCEPT_PHASE, PREPARE_PHASE = "preaccept", "accept", "prepare"


@dataclass(frozen=True, slots=True)
class Executed:
    """In ``Ready.committed``: a command this replica applied, ``index`` being its position in
    this replica's own execution order (replicas interleave commuting commands differently,
    so indexes are local), ``instance`` the instance it came from."""

    index: int
    term: int
    kind: int
    data: bytes
    instance: tuple[str, int]


@dataclass
class Drive:
    """An instance this replica is driving to commit: its own (ballot 0, or a re-proposal
    after a restart) or one it took over (``recovery``)."""

    inst: Inst
    ballot: int
    phase: str
    recovery: bool
    resend_at: float
    slow_at: float = 0.0
    oks: dict[NodeId, PreAcceptOK] = field(default_factory=dict)
    accepted: set[NodeId] = field(default_factory=set)
    prepared: list[tuple[NodeId, PrepareOK]] = field(default_factory=list)


@dataclass
class Waiter:
    """A client request proposed here, waiting for its instance to execute."""

    rid: Any
    kind: int
    data: bytes
    attempts: int = 1


class ReplicaState:
    """The fields (set by ``EPaxosReplica.__init__``; see there what each holds) and the
    helpers every part uses."""

    id: NodeId
    cfg: EPaxosConfig
    rng: random.Random
    sm: StateMachine
    conf: ConfigState
    voters: tuple[str, ...]
    others: tuple[str, ...]
    rank: int
    f: int
    fast_quorum: int
    space: Space
    conflicts: Conflicts
    executor: Executor
    next_num: int
    drives: dict[tuple[str, int], Drive]
    waiters: dict[tuple[str, int], Waiter]
    uncommitted: set[Inst]
    stuck: dict[tuple[str, int], tuple[float, float, float]]
    promised_seen: dict[tuple[str, int], int]
    peers_upto: dict[str, Deps]
    last_heard: dict[str, float]
    max_round: int
    since_snapshot: int
    horizon: Deps
    snapshot_count: int
    abstain: bool
    now: float
    out: Ready
    stats: dict[str, int]
    _exec_due: bool
    _reproposals: list[Waiter]

    def _send(self, dst: NodeId, msg: Any) -> None:
        self.out.send(dst, msg)

    def _others(self) -> tuple[str, ...]:
        return self.others

    def _broadcast(self, msg: Any) -> None:
        send = self.out.send
        for v in self.others:
            send(v, msg)

    def _persist(self, inst: Inst, sync: bool = True) -> None:
        """Write ``inst`` down; with ``sync`` it is on disk before any message or reply of
        this step leaves (every promise, vote and commit is)."""
        self.out.writes.append(inst.record())
        if sync:
            self.out.sync = True

    def _set(
        self, inst: Inst, status: int, cmd: Command, seq: int, deps: Deps, vbal: int, eq: bool
    ) -> None:
        """Give ``inst`` a status and attributes, keeping every index in step."""
        if inst.cmd is not None and inst.cmd != cmd:
            self.executor.forget(inst)  # a recovery replaced the command (with a no-op)
            fresh = True
        else:
            fresh = inst.cmd is None
        grew = fresh or seq > inst.seq
        inst.status, inst.cmd, inst.seq, inst.deps = status, cmd, seq, deps
        inst.vbal, inst.eq = vbal, eq
        if grew:
            self.conflicts.add(inst.owner, inst.num, cmd, seq)
        self.space.note(inst.owner, inst.num)
        self.space.note_deps(deps)
        if fresh:
            self.space.known(inst)
            self.executor.index(inst)
        if status < COMMITTED:
            self.uncommitted.add(inst)
        else:
            self.uncommitted.discard(inst)

    def _commit(self, inst: Inst, cmd: Command, seq: int, deps: Deps, announce: bool) -> None:
        """``inst`` is committed with these attributes; ``announce``: this replica decided it
        and tells the others."""
        if inst.status == COMMITTED:
            return
        self._set(inst, COMMITTED, cmd, seq, dict(deps), inst.vbal, False)
        self._persist(inst)
        self.drives.pop(inst.iid, None)
        self.stuck.pop(inst.iid, None)
        self.executor.committed(inst)
        self._exec_due = True
        if announce:
            self._broadcast(Commit(inst.owner, inst.num, cmd, seq, dict(deps)))

    def _heard(self, src: str) -> None:
        self.last_heard[src] = self.now

    def _quorum_contact(self) -> bool:
        if self.f == 0:
            return True
        horizon = self.now - self.cfg.recover_after
        heard = 0
        for t in self.last_heard.values():
            if t >= horizon:
                heard += 1
        return heard >= self.f

    def _ballot_above(self, b: int) -> int:
        rnd = max(b >> 8, self.max_round) + 1
        self.max_round = rnd
        return (rnd << 8) | self.rank

    def _note_ballot(self, b: int) -> None:
        if b >> 8 > self.max_round:
            self.max_round = b >> 8
