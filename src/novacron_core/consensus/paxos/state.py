"""The state every part of a Multi-Paxos member shares, and the plumbing of one step.

:class:`~novacron_core.consensus.paxos.node.PaxosNode` is assembled from one class per
role, each building on the one before: :class:`PaxosState` (this module: the fields, a
step's plumbing), :class:`~.acceptor.Acceptor` (promises and accepted values),
:class:`~.learner.Learner` (the chosen prefix, applying it, epochs, snapshots, catch-up),
:class:`~.proposer.Proposer` (phase 1, phase 2, the leader's duties) and ``PaxosNode``
(the Machine interface and message dispatch).

Every member is all three Paxos roles at once; one of them at a time is the distinguished
proposer (the leader) for a ballot. Its ballot round is what the interface calls the term.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from novacron_core.consensus.interface import (
    FOLLOWER,
    LEADER,
    ConfigState,
    SoftState,
    StateMachine,
)
from novacron_core.consensus.paxos.config import PaxosConfig
from novacron_core.consensus.paxos.messages import Ballot, Promise, Slot, SnapshotMeta
from novacron_core.consensus.paxos.reads import Reads
from novacron_core.consensus.paxos.storage import Promised
from novacron_core.consensus.quorum import QuorumError, QuorumSystem
from novacron_core.machine import NodeId, Ready


@dataclass(slots=True)
class Peer:
    """What a leader knows of another member."""

    commit: int = 0  # its chosen prefix, as it last said
    acked_ctx: int = 0  # the latest read round it confirmed
    active: bool = False  # heard from since the last quorum check


@dataclass(slots=True)
class Campaign:
    """Phase 1 in progress: the promises so far and when Prepare was last sent."""

    promises: dict[NodeId, Promise] = field(default_factory=dict)
    sent_at: float = 0.0
    transfer: bool = False


class PaxosState:
    """The fields (set by ``PaxosNode.__init__``; see there what each holds)."""

    id: NodeId
    cfg: PaxosConfig
    rng: random.Random
    sm: StateMachine
    promised: Ballot
    seen_round: int
    log: dict[int, Slot]
    snap: SnapshotMeta
    snap_data: bytes
    commit: int
    applied: int
    epoch: int
    conf: ConfigState
    quorums: QuorumSystem | None
    quorum_error: str
    role: str
    leader: NodeId | None
    ballot: Ballot
    leader_contact: float
    leader_commit: int
    election_deadline: float
    campaign: Campaign | None
    peers: dict[NodeId, Peer]
    next_index: int
    term_start: int
    stop_at: int | None
    acks: dict[int, set[NodeId]]
    sent_at: dict[int, float]
    chosen_ahead: set[int]
    pending: dict[int, tuple[Any, Ballot]]
    reads: Reads
    heartbeat_due: float
    quorum_due: float
    transferee: NodeId | None
    transfer_deadline: float
    catchup_at: float
    now: float
    out: Ready
    stats: dict[str, int]
    _reported: tuple[str, NodeId | None, int, ConfigState] | None
    abstain: bool

    if TYPE_CHECKING:
        # defined by the layers above, called by the ones below
        def _campaign(self, transfer: bool = False) -> None: ...
        def _learn_commit(self, src: NodeId, ballot: Ballot, commit: int) -> None: ...
        def _abandon(self) -> None: ...
        def _tally(self) -> None: ...
        def _confirm_reads(self) -> None: ...
        def _serve_waiting_reads(self) -> None: ...

    # ------------------------------------------------------------ a step

    @property
    def term(self) -> int:
        """The interface's term: the round of the ballot this member leads, seeks or
        follows."""
        return self.ballot.round if self.role != FOLLOWER else self.promised.round

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
            if self.campaign is not None:
                out.wake(self.campaign.sent_at + self.cfg.heartbeat_interval)
        self.out = Ready()
        return out

    def _send(self, dst: NodeId, msg: Any) -> None:
        self.out.send(dst, msg)

    def _promise(self, ballot: Ballot) -> None:
        """Bind the acceptor to ``ballot``: durable before any message that says so."""
        if ballot > self.promised:
            self.promised = ballot
            self.out.writes.append(Promised(ballot))
            self.out.sync = True

    def _reset_election_timer(self) -> None:
        t = self.cfg.election_timeout
        self.election_deadline = self.now + t + self.rng.random() * t

    def _set_conf(self, conf: ConfigState) -> None:
        self.conf = conf
        self.quorums, self.quorum_error = None, ""
        if conf.voters:
            try:
                self.quorums = self.cfg.quorum(conf.voters)
            except QuorumError as e:
                self.quorum_error = str(e)

    def _voter(self) -> bool:
        """May this member promise, accept and campaign?"""
        return self.id in self.conf.voters and self.quorums is not None and not self.abstain

    def _members(self) -> list[NodeId]:
        return [m for m in self.conf.members() if m != self.id]
