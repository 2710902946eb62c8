"""The acceptor: promises (phase 1b) and accepted values (phase 2b), each durable before
the message that reports it leaves; and the leader's heartbeats, which also carry its
commit index.

Stickiness: while a member hears from a live leader it refuses other proposers' Prepares
(an acceptor may always refuse), so a member that was cut off and comes back campaigning
cannot depose a leader the others still follow. A leadership transfer's Prepare is exempt.

A member that lost its durable state (``abstain``) neither promises nor accepts nor
confirms reads until it is re-added: it may have promised or accepted things it no longer
remembers, and breaking those promises could let two values be chosen. It only learns.
"""

from __future__ import annotations

from novacron_core.consensus.interface import CANDIDATE, FOLLOWER, LEADER
from novacron_core.consensus.paxos.messages import (
    Accept,
    Accepted,
    Ballot,
    Heartbeat,
    HeartbeatAck,
    Nack,
    Prepare,
    Promise,
)
from novacron_core.consensus.paxos.state import PaxosState
from novacron_core.consensus.paxos.storage import Accepts
from novacron_core.machine import NodeId


class Acceptor(PaxosState):
    def _nack(self, dst: NodeId, reason: str) -> None:
        self._send(dst, Nack(self.promised, self.epoch, self.commit, reason))

    def _leader_alive(self) -> bool:
        if self.role == LEADER:
            return True
        return self.leader is not None and self.now - self.leader_contact < (
            self.cfg.election_timeout
        )

    def _on_prepare(self, src: NodeId, m: Prepare) -> None:
        if not self._voter():
            self._nack(src, "rejoining" if self.abstain else "not a voter")
            return
        if m.ballot < self.promised:
            self._nack(src, "promised a higher ballot")
            return
        sticky = m.ballot > self.promised and not m.transfer and self.leader != src
        if sticky and self._leader_alive():
            self._nack(src, "following a live leader")
            return
        if self.role in (LEADER, CANDIDATE) and m.ballot.node != self.id:
            self._abandon()
            self.role = FOLLOWER
        self._promise(m.ballot)
        if self.leader != src:
            self.leader = None
        self._reset_election_timer()  # give the proposer time to finish phase 1
        floor = max(m.commit, self.commit)
        slots = [s for i, s in sorted(self.log.items()) if i > floor]
        self._send(src, Promise(m.ballot, self.epoch, self.commit, slots))

    def _follow(self, src: NodeId, ballot: Ballot) -> None:
        """``src`` leads ``ballot`` (it sent phase-2 or heartbeat messages for it)."""
        if self.role != FOLLOWER and ballot.node != self.id:
            if self.role == LEADER and ballot <= self.ballot:
                return
            self._abandon()
            self.role = FOLLOWER
        self.leader = src
        self.leader_contact = self.now
        self._reset_election_timer()

    def _on_accept(self, src: NodeId, m: Accept) -> None:
        if m.ballot < self.promised:
            self._nack(src, "promised a higher ballot")
            return
        if self.abstain:
            self._follow(src, m.ballot)
            self._learn_commit(src, m.ballot, m.commit)
            return
        voter = self._voter()
        if voter:
            self._promise(m.ballot)  # accepting a ballot also promises it
        self._follow(src, m.ballot)
        new = []
        for s in m.slots:
            if s.index <= self.commit or s.index <= self.snap.index:
                continue
            if self.log.get(s.index) != s:
                self.log[s.index] = s
                new.append(s)
        if new:
            self.out.writes.append(Accepts(new))
            # A learner's copy promises nothing: it need not be on disk before the answer.
            self.out.sync = self.out.sync or voter
        self._learn_commit(src, m.ballot, m.commit)
        if voter:
            self._send(src, Accepted(m.ballot, self.epoch, [s.index for s in m.slots], self.commit))
        else:
            self._send(src, Accepted(m.ballot, self.epoch, [], self.commit))

    def _on_heartbeat(self, src: NodeId, m: Heartbeat) -> None:
        if m.ballot < self.promised:
            self._nack(src, "promised a higher ballot")
            return
        self._follow(src, m.ballot)
        self._learn_commit(src, m.ballot, m.commit)
        if not self.abstain:
            ctx = m.ctx if self._voter() else 0
            self._send(src, HeartbeatAck(m.ballot, self.epoch, self.commit, ctx))
