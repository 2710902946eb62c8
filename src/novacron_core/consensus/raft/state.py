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
    log: RaftLog
    snap_data: bytes
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
    quorum_due: float
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

    def _finish(self) -> Ready:
        out = self.out
        now = (self.role, self.leader, self.term, self.conf)
        if now != self._reported:
            self._reported = now
            out.soft_state = self.soft_state()
        if self.role == LEADER:
            out.wake(min(self.heartbeat_due, self.quorum_due))
        else:
            out.wake(self.election_deadline)
        self.out = Ready()
        return out

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
