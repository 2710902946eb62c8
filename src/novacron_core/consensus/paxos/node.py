"""A sans-IO Multi-Paxos member (a :class:`~novacron_core.machine.Machine`).

Every input runs to completion and returns one :class:`Ready`: writes (fsynced before
anything is sent whenever a message promises what they record), messages, replies, the
next wake-up, what was applied and soft-state changes. Time arrives as ``now``; jitter comes
from the ``rng`` the driver passes in, so a simulated run replays exactly.

This module is the Machine interface and message dispatch; the roles are in ``acceptor``,
``learner`` and ``proposer`` (see ``state.py``).
"""

from __future__ import annotations

import random
from typing import Any

from novacron_core.consensus.interface import (
    COMMAND,
    FOLLOWER,
    LEADER,
    REJECTED,
    ChangeMember,
    ConfigState,
    GroupStatus,
    MemberAddress,
    Propose,
    Read,
    Reply,
    StateMachine,
    TransferLeader,
)
from novacron_core.consensus.paxos.config import PaxosConfig
from novacron_core.consensus.paxos.messages import (
    ZERO,
    Accept,
    Accepted,
    CatchUp,
    Heartbeat,
    HeartbeatAck,
    InstallSnapshot,
    Learn,
    Nack,
    Prepare,
    Promise,
    SnapshotMeta,
    TimeoutNow,
)
from novacron_core.consensus.paxos.proposer import Proposer
from novacron_core.consensus.paxos.reads import Reads
from novacron_core.consensus.paxos.storage import Recovered
from novacron_core.machine import NodeId, Ready

PROTOCOL_NAME = "multi-paxos"


class PaxosNode(Proposer):
    def __init__(
        self,
        node_id: NodeId,
        recovered: Recovered,
        sm: StateMachine,
        rng: random.Random,
        config: PaxosConfig | None = None,
        initial_voters: tuple[str, ...] = (),
        initial_addresses: tuple[MemberAddress, ...] = (),
    ) -> None:
        self.id = node_id
        self.cfg = config or PaxosConfig()
        self.rng = rng
        self.sm = sm
        snap = recovered.snap
        if snap.index == 0 and not snap.config.voters:
            # Bootstrap: every founding member starts from the same implicit membership at
            # slot 0 (addresses from the static peer list seed it, as in Raft).
            voters = tuple(sorted(initial_voters))
            addrs = tuple(sorted((a for a in initial_addresses if a.node in voters), key=_node))
            snap = SnapshotMeta(0, 0, ConfigState(voters, (), addrs))
        self.snap, self.snap_data = snap, recovered.snap_data
        if recovered.snap.index:
            sm.restore(recovered.snap_data)
        self.promised = recovered.promised
        self.seen_round = self.promised.round
        self.log = dict(recovered.slots)
        # the chosen prefix on disk is applied in on_start (so Ready.committed lists it)
        self.commit = self.applied = snap.index
        self._durable_commit = recovered.commit
        self.epoch = snap.epoch
        self.quorums, self.quorum_error = None, ""
        self._set_conf(snap.config)
        self.role = FOLLOWER
        self.leader: NodeId | None = None
        self.ballot = ZERO  # the ballot this member leads or seeks
        self.leader_contact = float("-inf")
        self.leader_commit = 0  # the leader's commit index as last heard (readiness)
        self.election_deadline = 0.0
        self.campaign = None
        self.peers = {}
        self.next_index = 0
        self.term_start = 0  # the leader's barrier slot
        self.stop_at = None  # a membership change proposed: the instance ends there
        self.acks = {}  # in-flight slot -> voters that accepted it (the leader included)
        self.sent_at = {}  # in-flight slot -> when its Accept last went out
        self.chosen_ahead = set()  # chosen slots past a gap in the chosen prefix
        self.pending = {}  # slot -> (request id, ballot it was proposed in)
        self.reads = Reads()
        self.heartbeat_due = 0.0
        self.quorum_due = 0.0
        self.transferee = None
        self.transfer_deadline = 0.0
        self.catchup_at = float("-inf")
        self.now = 0.0
        self.out = Ready()
        self.stats = {"elections": 0, "proposals": 0}
        self._reported = None
        # Never promise, accept, confirm or campaign (a member that lost its durable state,
        # until it is removed and added again; see acceptor.py).
        self.abstain = False

    # ------------------------------------------------------------ Machine

    def on_start(self, now: float) -> Ready:
        self._begin(now)
        durable = self._durable_commit
        if durable > self.commit and all(
            i in self.log for i in range(self.commit + 1, durable + 1)
        ):
            # Chosen before the restart: apply it now (it is already on disk).
            self.commit = durable
            self._apply()
        # Accepted slots of an instance that ended before the restart can never be chosen.
        self.log = {i: s for i, s in self.log.items() if i <= self.commit or s.epoch == self.epoch}
        self._reset_election_timer()
        return self._finish()

    def on_tick(self, now: float) -> Ready:
        self._begin(now)
        if self.role == LEADER:
            self._leader_tick()
        elif now >= self.election_deadline:
            self._campaign()  # (a candidate's retry, with a higher ballot)
        elif (
            self.campaign is not None and now >= self.campaign.sent_at + self.cfg.heartbeat_interval
        ):
            self._send_prepares()  # to voters that have not answered (lost, or behind)
        return self._finish()

    def on_message(self, now: float, src: NodeId, msg: Any) -> Ready:
        self._begin(now)
        self._step(src, msg)
        return self._finish()

    def on_request(self, now: float, request_id: Any, request: Any) -> Ready:
        self._begin(now)
        if isinstance(request, Propose):
            self._propose(request_id, COMMAND, request.data)
        elif isinstance(request, Read):
            self._read(request_id, request.query)
        elif isinstance(request, ChangeMember):
            self._change_member(request_id, request)
        elif isinstance(request, TransferLeader):
            self._transfer(request_id, request.target)
        else:
            self.out.reply(request_id, Reply(REJECTED, detail=f"unknown request {request!r}"))
        return self._finish()

    def on_peer_unreachable(self, now: float, peer: NodeId) -> Ready:
        """The runtime saw the connection to ``peer`` refused or closed. When that is the
        leader (kill -9 closes its sockets) the surviving voters campaign soon, one after
        another in id order ``T/4`` apart so they do not duel, instead of waiting T..2T.
        A false alarm costs little: the others still hear the leader and refuse."""
        self._begin(now)
        if (
            self.cfg.leader_loss_campaign
            and self.role == FOLLOWER
            and peer == self.leader
            and self._voter()
        ):
            survivors = sorted(v for v in self.conf.voters if v != peer)
            t = self.cfg.election_timeout
            delay = survivors.index(self.id) * t / 4 + self.rng.random() * t / 20
            self.leader = None
            self.leader_contact = float("-inf")
            self.election_deadline = min(self.election_deadline, now + delay)
        return self._finish()

    # ------------------------------------------------------------ dispatch

    def _step(self, src: NodeId, m: Any) -> None:
        # Catch-up records are facts about the chosen prefix: any epoch may use them.
        if isinstance(m, CatchUp):
            self._on_catch_up(src, m)
            return
        if isinstance(m, Learn):
            self._on_learn(src, m)
            return
        if isinstance(m, InstallSnapshot):
            self._on_install_snapshot(src, m)
            return
        ballot = m.promised if isinstance(m, Nack) else m.ballot
        self.seen_round = max(self.seen_round, ballot.round)
        if m.epoch > self.epoch:
            self._ask(src)  # a membership change we have not applied yet
            return
        if m.epoch < self.epoch:
            if isinstance(m, Prepare | Accept | Heartbeat):
                self._nack(src, "a later membership epoch")  # it will ask us to catch up
            return
        if isinstance(m, Accept):
            self._on_accept(src, m)
        elif isinstance(m, Accepted):
            self._on_accepted(src, m)
        elif isinstance(m, Heartbeat):
            self._on_heartbeat(src, m)
        elif isinstance(m, HeartbeatAck):
            self._on_heartbeat_ack(src, m)
        elif isinstance(m, Prepare):
            self._on_prepare(src, m)
        elif isinstance(m, Promise):
            self._on_promise(src, m)
        elif isinstance(m, Nack):
            self._on_nack(src, m)
        elif isinstance(m, TimeoutNow):
            self._on_timeout_now(src, m)

    # ------------------------------------------------------------ status

    def lag(self) -> int:
        """Chosen slots this member knows of and has yet to apply."""
        if self.role == LEADER:
            return 0
        return max(0, self.leader_commit - self.applied)

    def status(self) -> GroupStatus:
        quorum = self.quorums.describe() if self.quorums is not None else self.quorum_error
        return GroupStatus(
            id=self.id,
            protocol=PROTOCOL_NAME,
            role=self.role,
            term=self.term,
            leader=self.leader,
            commit=self.commit,
            applied=self.applied,
            lag=self.lag(),
            last_index=max(self.log, default=self.snap.index),
            snapshot_index=self.snap.index,
            voters=list(self.conf.voters),
            learners=list(self.conf.learners),
            elections=self.stats["elections"],
            quorum=quorum,
        )

    def readded(self) -> bool:
        """Removed and added again as a learner, and caught up past what a leader said
        was chosen since this start (see ``RaftNode.readded`` for why both)."""
        return (
            self.id in self.conf.learners
            and self.leader_commit > 0
            and self.applied >= self.leader_commit
        )


def _node(a: MemberAddress) -> str:
    return a.node
