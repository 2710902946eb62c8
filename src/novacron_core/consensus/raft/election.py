"""Roles and elections: PreVote and Vote, CheckQuorum stickiness, becoming leader."""

from __future__ import annotations

from novacron_core.consensus.interface import (
    CANDIDATE,
    FOLLOWER,
    LEADER,
    PRE_CANDIDATE,
)
from novacron_core.consensus.raft.messages import (
    NOOP,
    NOT_LEADER,
    UNKNOWN,
    Entry,
    Reply,
    Vote,
    VoteResp,
)
from novacron_core.consensus.raft.state import RaftState
from novacron_core.machine import NodeId


class Election(RaftState):
    def _become_follower(self, term: int, leader: NodeId | None) -> None:
        was_leader = self.role == LEADER
        if term != self.term:
            self.term, self.vote = term, None
            self._persist_hard()
        self.role = FOLLOWER
        self.leader = leader
        self.votes = {}
        self._reset_election_timer()
        if was_leader:
            self._abandon_leadership()

    def _abandon_leadership(self) -> None:
        # Proposals may still commit under the next leader: their outcome is unknown, and a
        # client retrying with the same session seq gets exactly-once either way.
        for rid, _ in self.pending.values():
            self.out.reply(rid, Reply(UNKNOWN, leader=self.leader))
        self.pending.clear()
        for rid, _ in self.reads.drain():
            self.out.reply(rid, Reply(NOT_LEADER, leader=self.leader))
        self.progress.clear()
        self.transferee = None

    def _campaign(self, pre: bool, transfer: bool = False) -> None:
        if self.id not in self.conf.voters or self.abstain:
            return
        self.stats["elections"] += 0 if pre else 1
        if pre:
            self.role = PRE_CANDIDATE
            term = self.term + 1
        else:
            self.term += 1
            self.vote = self.id
            self._persist_hard()
            self.role = CANDIDATE
            term = self.term
        self.leader = None
        self.votes = {self.id: True}
        self._reset_election_timer()
        if self._tally():
            return
        msg = Vote(term, self.log.last_index, self.log.last_term, pre=pre, transfer=transfer)
        for v in self.conf.voters:
            if v != self.id:
                self._send(v, msg)

    def _tally(self) -> bool:
        """Count votes; act on a decision. True when the campaign ended."""
        granted = sum(1 for v in self.conf.voters if self.votes.get(v) is True)
        rejected = sum(1 for v in self.conf.voters if self.votes.get(v) is False)
        if granted >= self._quorum():
            if self.role == PRE_CANDIDATE:
                self._campaign(pre=False)
            else:
                self._become_leader()
            return True
        if rejected >= self._quorum():
            self._become_follower(self.term, None)
            return True
        return False

    def _become_leader(self) -> None:
        self.role = LEADER
        self.leader = self.id
        self.votes = {}
        self.transferee = None
        self.progress = {}
        self._sync_progress()
        self.heartbeat_due = self.now + self.cfg.heartbeat_interval
        self.grace_used, self.grace_until = False, 0.0
        # A no-op of our own term: until it commits we cannot know the true commit index
        # (figure 8), so reads and config changes wait for it.
        self.term_start = self.log.last_index + 1
        self._append_local([Entry(self.term, self.term_start, NOOP)])
        self._broadcast_append()

    def _on_vote(self, src: NodeId, m: Vote) -> None:
        if self.abstain:
            self._send(src, VoteResp(self.term, False, pre=m.pre))
            return
        up_to_date = self.log.up_to_date(m.last_index, m.last_term)
        if m.pre:
            grant = m.term > self.term and up_to_date
            self._send(src, VoteResp(m.term if grant else self.term, grant, pre=True))
            return
        can_vote = self.vote == src or (self.vote is None and self.leader is None)
        grant = can_vote and up_to_date
        if grant:
            self.vote = src
            self._persist_hard()
            self._reset_election_timer()
        self._send(src, VoteResp(self.term, grant))

    def _heard_leader(self, src: NodeId) -> None:
        if self.role != FOLLOWER:
            self._become_follower(self.term, src)
        self.leader = src
        self.leader_contact = self.now
        self._reset_election_timer()
        self.grace_used = False
