"""A sans-IO Raft participant (etcd-io/raft's design, expressed as a :class:`Machine`).

Every input (message, tick, client request) runs to completion and returns one
:class:`Ready`: writes to persist (fsynced before anything is sent, whenever a message or
reply depends on them), messages, replies and the next wake-up. Nothing here reads a clock,
touches a socket or uses global randomness: time arrives as ``now`` and jitter comes from
the ``rng`` the driver passes in, so a simulated run replays exactly.

This module is the Machine interface and message dispatch; the rest of a participant is in
``state`` (fields, a step's plumbing), ``election``, ``membership``, ``snapshots`` and
``replication`` (see ``state.py``).
"""

from __future__ import annotations

import random
from typing import Any

from novacron_core.consensus.interface import (
    CANDIDATE,
    FOLLOWER,
    LEADER,
    PRE_CANDIDATE,
    FollowerStatus,
    GroupStatus,
    RecoveredSummary,
)
from novacron_core.consensus.raft.config import RaftConfig, StateMachine
from novacron_core.consensus.raft.log import RaftLog
from novacron_core.consensus.raft.messages import (
    NORMAL,
    REJECTED,
    Append,
    AppendResp,
    ChangeMember,
    ConfigState,
    InstallSnapshot,
    MemberAddress,
    Propose,
    Read,
    Reply,
    SnapshotChunk,
    SnapshotChunkResp,
    SnapshotMeta,
    TimeoutNow,
    TransferLeader,
    Vote,
    VoteResp,
)
from novacron_core.consensus.raft.progress import REPLICATE, Progress
from novacron_core.consensus.raft.reads import ReadQueue
from novacron_core.consensus.raft.replication import Replication
from novacron_core.consensus.raft.snapshots import Incoming
from novacron_core.consensus.raft.storage import (
    Recovered,
)
from novacron_core.consensus.snapshot_data import snapshot_bytes
from novacron_core.machine import NodeId, Ready

__all__ = ["CANDIDATE", "FOLLOWER", "LEADER", "PRE_CANDIDATE", "RaftNode"]


class RaftNode(Replication):
    def __init__(
        self,
        node_id: NodeId,
        recovered: Recovered,
        sm: StateMachine,
        rng: random.Random,
        config: RaftConfig | None = None,
        initial_voters: tuple[str, ...] = (),
        initial_addresses: tuple[MemberAddress, ...] = (),
    ) -> None:
        self.id = node_id
        self.cfg = config or RaftConfig()
        self.rng = rng
        self.sm = sm
        self.term = recovered.hard.term
        self.vote = recovered.hard.vote
        self.recovered = recovered_summary(recovered)
        snap = recovered.snap
        if snap.index == 0 and not snap.config.voters:
            # Bootstrap: every founding member starts from the same implicit config at index 0.
            # Their addresses (from the static peer list) seed the config, so the first change
            # replicates them to members that join later.
            voters = tuple(sorted(initial_voters))
            addrs = tuple(sorted((a for a in initial_addresses if a.node in voters), key=_node))
            snap = SnapshotMeta(0, 0, ConfigState(voters, (), addrs))
        self.log = RaftLog(snap, recovered.entries)
        self.snap_data = recovered.snap_data
        if recovered.snap.index:
            sm.restore(snapshot_bytes(recovered.snap_data))
        self.role = FOLLOWER
        self.progress: dict[NodeId, Progress] = {}
        self.commit = self.applied = snap.index
        self.applied_conf = snap.config
        self.conf = snap.config
        self.conf_index = snap.index
        self._reload_conf()
        self.leader: NodeId | None = None
        self.leader_commit = 0  # the leader's commit index as last heard (readiness)
        self.leader_contact = float("-inf")
        self.election_deadline = 0.0
        self.votes: dict[NodeId, bool] = {}
        self.pending: dict[int, tuple[Any, int]] = {}  # index -> (request id, term)
        self.reads = ReadQueue()
        self.term_start = 0  # index of the leader's first entry in its term
        self.heartbeat_due = 0.0
        # Starvation (see RaftConfig.lag_tolerance): until ``grace_until`` this node does not
        # act on others' silence it could not hear; one grace until it hears its leader
        # again (a follower) or ticks on time again (a leader).
        self.started = False
        self.grace_until = 0.0
        self.grace_used = False
        self.transferee: NodeId | None = None
        self.transfer_deadline = 0.0
        self.now = 0.0
        self.out = Ready()
        self.stats = {
            "elections": 0,
            "proposals": 0,
            "snapshots_sent": 0,
            "snapshot_bytes_sent": 0,
        }
        # The soft state last reported in a Ready (see ``_finish``).
        self._reported: tuple[str, NodeId | None, int, ConfigState] | None = None
        # A chunked snapshot being received: its meta and the bytes so far (in memory, so
        # a transfer resumes across lost chunks and leader changes, not across restarts).
        self._incoming: Incoming | None = None
        # Abstain from elections: never grant a Vote or PreVote, never campaign, even while
        # the configuration lists us as a voter. Appends and snapshots are still accepted
        # and acknowledged (those acks are truthful). Set by a runtime whose durable state
        # was lost (its log may lack entries it acknowledged before, so its vote could
        # elect a leader missing committed entries) until it was removed and re-added.
        self.abstain = False

    def on_start(self, now: float) -> Ready:
        self._begin(now)
        self._reset_election_timer()
        self.started = True
        return self._finish()

    def on_tick(self, now: float) -> Ready:
        self._begin(now)
        if self.role == LEADER:
            self._leader_tick()
        elif now >= self.election_deadline:
            if self.id in self.conf.voters and not self.abstain:
                self._campaign(pre=self.cfg.pre_vote)
            else:
                self._reset_election_timer()
        return self._finish()

    def on_message(self, now: float, src: NodeId, msg: Any) -> Ready:
        self._begin(now)
        self._step(src, msg)
        return self._finish()

    def on_peer_unreachable(self, now: float, peer: NodeId) -> Ready:
        """The runtime saw its connection to ``peer`` refused, reset or closed by the peer.

        When ``peer`` is our leader it has most likely crashed (kill -9 closes its sockets),
        so instead of waiting out the election timeout (T..2T after its last heartbeat) we
        campaign soon. Still safe from disruption: the campaign starts with PreVote, and
        voters that keep hearing a leader that is in fact alive refuse it. The survivors go
        one after another in order of id, ``T/4`` apart, so they do not split the vote (two
        pre-candidates grant each other, then each votes for itself).
        """
        self._begin(now)
        cfg = self.cfg
        if (
            cfg.leader_loss_campaign
            and self.role == FOLLOWER
            and peer == self.leader
            and self.id in self.conf.voters
            and not self.abstain
        ):
            survivors = sorted(v for v in self.conf.voters if v != peer)
            delay = survivors.index(self.id) * cfg.election_timeout / 4
            delay += self.rng.random() * cfg.election_timeout / 20
            start = now
            if cfg.read_mode == "lease":
                # Leases rely on followers refusing votes for T after the leader's last
                # contact: keep that promise, only skip the randomised part of the wait.
                start = max(now, self.leader_contact + cfg.election_timeout)
            else:
                # Stop protecting a leader we believe dead, so we grant the first
                # survivor's PreVote instead of ignoring it until our own timeout.
                self.leader = None
                self.leader_contact = float("-inf")
            self.election_deadline = min(self.election_deadline, start + delay)
        return self._finish()

    def on_request(self, now: float, request_id: Any, request: Any) -> Ready:
        self._begin(now)
        if isinstance(request, Propose):
            self._propose(request_id, NORMAL, request.data)
        elif isinstance(request, Read):
            self._read(request_id, request.query)
        elif isinstance(request, ChangeMember):
            self._change_member(request_id, request)
        elif isinstance(request, TransferLeader):
            self._transfer(request_id, request.target)
        else:
            self.out.reply(request_id, Reply(REJECTED, detail=f"unknown request {request!r}"))
        return self._finish()

    def _step(self, src: NodeId, m: Any) -> None:
        term = m.term
        if term > self.term:
            if isinstance(m, Vote):
                in_lease = self.cfg.check_quorum and (
                    self.role == LEADER
                    or (
                        self.leader is not None
                        and self.now - self.leader_contact < self.cfg.election_timeout
                    )
                )
                # Leader stickiness: a node that hears from a live leader ignores campaigns,
                # so a partitioned node rejoining cannot depose it (and leases stay sound).
                # The leader itself too (CheckQuorum keeps it honest): were it to grant a
                # PreVote, one follower's vote would make a quorum and depose it.
                if in_lease and not m.transfer:
                    return
                if not m.pre:
                    self._become_follower(term, None)
            elif isinstance(m, VoteResp) and m.pre and m.granted:
                pass  # a pre-vote is granted at our would-be term; nothing changes yet
            else:
                leading = Append | InstallSnapshot | SnapshotChunk | TimeoutNow
                lead = src if isinstance(m, leading) else None
                self._become_follower(term, lead)
        elif term < self.term:
            if isinstance(m, Append | InstallSnapshot | SnapshotChunk):
                # Tell a stale leader our term so it steps down (with PreVote/CheckQuorum it
                # may otherwise never learn it, as our elections do not reach it).
                self._send(src, AppendResp(self.term, False))
            elif isinstance(m, Vote) and m.pre:
                self._send(src, VoteResp(self.term, False, pre=True))
            return
        if isinstance(m, Append):
            self._on_append(src, m)
        elif isinstance(m, AppendResp):
            if self.role == LEADER:
                self._on_append_resp(src, m)
        elif isinstance(m, Vote):
            self._on_vote(src, m)
        elif isinstance(m, VoteResp):
            if (self.role == PRE_CANDIDATE and m.pre) or (self.role == CANDIDATE and not m.pre):
                self.votes[src] = m.granted
                self._tally()
        elif isinstance(m, InstallSnapshot):
            self._on_snapshot(src, m)
        elif isinstance(m, SnapshotChunk):
            self._on_snapshot_chunk(src, m)
        elif isinstance(m, SnapshotChunkResp):
            if self.role == LEADER:
                self._on_chunk_resp(src, m)
        elif isinstance(m, TimeoutNow) and self.role != LEADER:
            self._campaign(pre=False, transfer=True)

    def lag(self) -> int:
        """How many committed entries this node has yet to apply, as far as it knows."""
        if self.role == LEADER:
            return 0
        return max(0, self.leader_commit - self.applied)

    def status(self) -> GroupStatus:
        return GroupStatus(
            id=self.id,
            protocol="raft",
            role=self.role,
            term=self.term,
            leader=self.leader,
            commit=self.commit,
            applied=self.applied,
            lag=self.lag(),
            last_index=self.log.last_index,
            snapshot_index=self.log.snap.index,
            voters=list(self.conf.voters),
            learners=list(self.conf.learners),
            elections=self.stats["elections"],
            recovered=self.recovered,
            followers={
                p: FollowerStatus(match=pr.match, streaming=pr.state == REPLICATE)
                for p, pr in sorted(self.progress.items())
            }
            if self.role == LEADER
            else {},
        )

    def readded(self) -> bool:
        """A rejoining member was removed and added again: the configuration it applied
        lists it as a learner *and* it has applied everything a leader said was committed
        since this start. The second half matters: replaying history from index 1 (or an
        old snapshot) it may pass a learner config from an earlier replace of the same node;
        the leader's commit index, heard after the loss, lies beyond every config from
        before the loss, so the config at or past it is a current one."""
        return (
            self.id in self.applied_conf.learners
            and self.leader_commit > 0
            and self.applied >= self.leader_commit
        )


def recovered_summary(state: Recovered) -> RecoveredSummary:
    """What this member read back from its durable state (see RecoveredSummary)."""
    last = state.entries[-1] if state.entries else None
    return RecoveredSummary(
        last_index=last.index if last else state.snap.index,
        last_term=last.term if last else state.snap.term,
        snapshot_index=state.snap.index,
        term=state.hard.term,
        entries=len(state.entries),
    )


def _node(a: MemberAddress) -> str:
    return a.node
