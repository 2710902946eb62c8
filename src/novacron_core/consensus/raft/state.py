"""The state every part of a Raft participant shares, and the plumbing of one step.

:class:`~novacron_core.consensus.raft.node.RaftNode` is assembled from one class per
concern, each in its own module and each building on the one before: :class:`RaftState`
(this module: the fields, declared once; beginning and finishing a step),
:class:`~.election.Election` (roles, PreVote/Vote, leader contact),
:class:`~.membership.Membership` (configurations, member changes, leadership transfer),
:class:`~.snapshots.SnapshotTransfer` (taking, sending in chunks, installing snapshots),
:class:`~.replication.Replication` (appends, commit, apply, ReadIndex and lease reads,
proposals) and ``RaftNode`` itself (the Machine interface and message dispatch).
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

from novacron_core.consensus.interface import (
    LEADER,
    RecoveredSummary,
    SoftState,
)
from novacron_core.consensus.raft.config import RaftConfig, StateMachine
from novacron_core.consensus.raft.log import RaftLog
from novacron_core.consensus.raft.messages import (
    ConfigState,
    Entry,
)
from novacron_core.consensus.raft.progress import Progress
from novacron_core.consensus.raft.reads import ReadQueue
from novacron_core.consensus.raft.storage import (
    HardState,
)
from novacron_core.consensus.snapshot_data import SnapshotData
from novacron_core.machine import NodeId, Ready

if TYPE_CHECKING:
    from novacron_core.consensus.raft.snapshots import Incoming


class RaftState:
    """The fields (set by ``RaftNode.__init__``; see there what each holds)."""

    id: NodeId
    cfg: RaftConfig
    rng: random.Random
    sm: StateMachine
    term: int
    vote: str | None
    recovered: RecoveredSummary
    log: RaftLog
    snap_data: SnapshotData  # bytes, or a snapshot taken but not yet encoded
    role: str
    progress: dict[NodeId, Progress]
    commit: int
    applied: int
    applied_conf: ConfigState
    conf: ConfigState
    conf_index: int
    leader: NodeId | None
    leader_commit: int
    leader_contact: float
    election_deadline: float
    votes: dict[NodeId, bool]
    pending: dict[int, tuple[Any, int]]
    reads: ReadQueue
    term_start: int
    heartbeat_due: float
    started: bool
    grace_until: float
    grace_used: bool
    transferee: NodeId | None
    transfer_deadline: float
    now: float
    out: Ready
    stats: dict[str, int]
    _reported: tuple[str, NodeId | None, int, ConfigState] | None
    _incoming: Incoming | None
    abstain: bool

    if TYPE_CHECKING:
        # defined by Membership, called by Election below it
        def _sync_progress(self) -> None: ...

        # defined by Replication, called by the layers below it
        def _append_local(self, entries: list[Entry]) -> None: ...
        def _broadcast_append(self) -> None: ...
        def _commit_to(self, index: int) -> None: ...
        def _not_leader(self, rid: Any) -> bool: ...
        def _propose(self, rid: Any, kind: int, data: bytes) -> None: ...
        def _send_append(self, peer: NodeId, ctx: int = 0, heartbeat: bool = False) -> None: ...

    def soft_state(self) -> SoftState:
        return SoftState(self.role, self.leader, self.term, self.conf)

    def _begin(self, now: float) -> None:
        self.now = now
        self.out = Ready()
        if self.started and not self.grace_used and self._overdue() > self._lag_tolerance():
            self._starved()

    def _finish(self) -> Ready:
        out = self.out
        now = (self.role, self.leader, self.term, self.conf)
        if now != self._reported:
            self._reported = now
            out.soft_state = self.soft_state()
        out.wake(self.heartbeat_due if self.role == LEADER else self.election_deadline)
        self.out = Ready()
        return out

    def _lag_tolerance(self) -> float:
        tol = self.cfg.lag_tolerance
        return float("inf") if tol is None else tol

    def _overdue(self) -> float:
        """How long ago our own next deadline passed (heartbeat or election timeout)."""
        return self.now - (self.heartbeat_due if self.role == LEADER else self.election_deadline)

    def _starved(self) -> None:
        """Our deadline passed more than ``lag_tolerance`` ago: this process was not
        running, and what the others sent meanwhile may still wait unread. For one election
        timeout, judge nobody by a silence we could not hear: a leader skips CheckQuorum; a
        follower re-arms its election timer (randomized: the others starved with it must
        not all campaign at once) and counts its leader as just heard, so it also refuses
        PreVotes meanwhile (only ever more conservative for leases). A follower gets this
        once until it hears its leader again, a leader once until it ticks on time again:
        a process late every time still campaigns, or steps down, one grace later."""
        t = self.cfg.election_timeout
        self.grace_used = True
        self.grace_until = self.now + t
        if self.role == LEADER:
            return
        if self.leader is not None:
            self.leader_contact = self.now
        self.election_deadline = self.now + t + self.rng.random() * t

    def _send(self, dst: NodeId, msg: Any) -> None:
        self.out.send(dst, msg)

    def _persist_hard(self) -> None:
        self.out.writes.append(HardState(self.term, self.vote))
        self.out.sync = True

    def _reset_election_timer(self) -> None:
        t = self.cfg.election_timeout
        self.election_deadline = self.now + t + self.rng.random() * t

    def _quorum(self) -> int:
        return len(self.conf.voters) // 2 + 1
