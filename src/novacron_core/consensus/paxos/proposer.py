"""The proposer and the leader's duties: phase 1 once per ballot for every open slot,
phase 2 per slot and pipelined, counting acceptances against the quorum system,
heartbeats, read confirmation, retransmission, CheckQuorum, leadership transfer and
membership changes.

Phase 1 (``_campaign`` .. ``_become_leader``): Prepare goes to every voter; the
candidate's own acceptor promises only once the others' promises would make a phase-1
quorum with it (so a campaign that fails does not leave this member refusing a live
leader). Before it leads, the candidate learns every slot its promisers know chosen
(CatchUp); then, for every slot after its commit index up to the highest any promiser
accepted, it proposes the value accepted in the highest ballot (or a no-op for a hole),
and finally a barrier of its own: once that is chosen, its state holds everything ever
chosen. A slot accepted after a membership change is never proposed (the instance ends
there) and no barrier follows it.
"""

from __future__ import annotations

from typing import Any

from novacron_core.codec import encode
from novacron_core.consensus.interface import (
    BARRIER,
    BUSY,
    CANDIDATE,
    CONFIG,
    FOLLOWER,
    LEADER,
    NOOP,
    NOT_LEADER,
    OK,
    REJECTED,
    UNKNOWN,
    ChangeMember,
    ConfigState,
    MemberAddress,
    Reply,
)
from novacron_core.consensus.paxos.learner import Learner
from novacron_core.consensus.paxos.messages import (
    Accept,
    Accepted,
    Ballot,
    Heartbeat,
    HeartbeatAck,
    Nack,
    Prepare,
    Promise,
    Slot,
    TimeoutNow,
)
from novacron_core.consensus.paxos.reads import Reads
from novacron_core.consensus.paxos.state import Campaign, Peer
from novacron_core.consensus.paxos.storage import Accepts
from novacron_core.consensus.quorum import QuorumError
from novacron_core.machine import NodeId


class Proposer(Learner):
    # ------------------------------------------------------------ phase 1

    def _campaign(self, transfer: bool = False) -> None:
        if not self._voter():
            self._reset_election_timer()
            return
        if self.role == LEADER:
            self._abandon()
        top = max(self.promised.round, self.seen_round, self.ballot.round)
        self.ballot = Ballot(top + 1, self.id)
        self.seen_round = self.ballot.round
        self.role = CANDIDATE
        self.leader = None
        self.campaign = Campaign(sent_at=self.now, transfer=transfer)
        self.stats["elections"] += 1
        self._reset_election_timer()
        self._send_prepares()
        self._tally()

    def _send_prepares(self) -> None:
        assert self.campaign is not None
        self.campaign.sent_at = self.now
        msg = Prepare(self.ballot, self.epoch, self.commit, self.campaign.transfer)
        for v in self.conf.voters:
            if v != self.id and v not in self.campaign.promises:
                self._send(v, msg)

    def _on_promise(self, src: NodeId, m: Promise) -> None:
        if self.role != CANDIDATE or self.campaign is None or m.ballot != self.ballot:
            return
        self.campaign.promises[src] = m
        if m.commit > self.commit:
            self._ask(src)
        self._tally()

    def _tally(self) -> None:
        c, q = self.campaign, self.quorums
        if c is None or q is None or self.role != CANDIDATE:
            return
        if not q.phase1(set(c.promises) | {self.id}):
            return
        if self.id not in c.promises:
            if self.promised > self.ballot:
                self._give_up()  # our own acceptor has moved on
                return
            self._promise(self.ballot)
            c.promises[self.id] = Promise(self.ballot, self.epoch, self.commit, [])
        # Learn every chosen slot a promiser knows of before leading.
        src, best = max(((s, p.commit) for s, p in c.promises.items()), key=lambda x: x[1])
        if best > self.commit:
            self._ask(src)
            return
        self._become_leader()

    def _give_up(self) -> None:
        self.role = FOLLOWER
        self.campaign = None
        self._reset_election_timer()

    def _become_leader(self) -> None:
        assert self.campaign is not None
        recovered: dict[int, Slot] = {}
        promised = [p.slots for s, p in self.campaign.promises.items() if s != self.id]
        promised.append([s for i, s in self.log.items() if i > self.commit])
        for slots in promised:
            for s in slots:
                if s.index <= self.commit or s.epoch != self.epoch:
                    continue
                cur = recovered.get(s.index)
                if cur is None or s.ballot > cur.ballot:
                    recovered[s.index] = s
        top = max(recovered, default=self.commit)
        stop = min((i for i, s in recovered.items() if s.kind == CONFIG), default=None)
        self.campaign = None
        self.role = LEADER
        self.leader = self.id
        self.peers = {m: Peer() for m in self._members()}
        self.acks, self.sent_at, self.chosen_ahead = {}, {}, set()
        self.reads = Reads()
        self.transferee = None
        self.heartbeat_due = self.now + self.cfg.heartbeat_interval
        self.quorum_due = self.now + self.cfg.election_timeout
        slots = []
        for i in range(self.commit + 1, (stop or top) + 1):
            old = recovered.get(i)
            kind, data = (old.kind, old.data) if old is not None else (NOOP, b"")
            slots.append(Slot(i, self.ballot, self.epoch, kind, data))
        self.stop_at = stop
        if stop is None:
            self.term_start = top + 1
            slots.append(Slot(self.term_start, self.ballot, self.epoch, BARRIER))
        else:
            self.term_start = stop  # reads and changes wait for the next instance
        self.next_index = slots[-1].index + 1 if slots else self.commit + 1
        self._propose_slots(slots)

    # ------------------------------------------------------------ phase 2

    def _propose_slots(self, slots: list[Slot]) -> None:
        if not slots:
            return
        for s in slots:
            self.log[s.index] = s
            self.acks[s.index] = {self.id}
            self.sent_at[s.index] = self.now
        self.out.writes.append(Accepts(slots))
        self.out.sync = True
        msg = Accept(self.ballot, self.epoch, slots, self.commit)
        for m in self._members():
            self._send(m, msg)
        self._count([s.index for s in slots])

    def _on_accepted(self, src: NodeId, m: Accepted) -> None:
        if self.role != LEADER or m.ballot != self.ballot:
            return
        self._heard(src, m.commit)
        if src in self.conf.voters:
            newly = []
            for i in m.indexes:
                a = self.acks.get(i)
                if a is not None and src not in a:
                    a.add(src)
                    newly.append(i)
            self._count(newly)
        self._maybe_transfer(src)

    def _heard(self, src: NodeId, commit: int) -> None:
        peer = self.peers.get(src)
        if peer is not None:
            peer.active = True
            peer.commit = max(peer.commit, commit)

    def _count(self, indexes: list[int]) -> None:
        """Slots whose acceptances now form a phase-2 quorum are chosen."""
        q = self.quorums
        if q is None:
            return
        for i in indexes:
            a = self.acks.get(i)
            if a is not None and q.phase2(a):
                self.chosen_ahead.add(i)
        c = self.commit
        while c + 1 in self.chosen_ahead:
            c += 1
            self.chosen_ahead.discard(c)
            self.acks.pop(c, None)
            self.sent_at.pop(c, None)
        self._commit_to(c)

    def _propose(self, rid: Any, kind: int, data: bytes) -> None:
        if self._not_leader(rid) or self._busy(rid):
            return
        self.stats["proposals"] += 1
        s = Slot(self.next_index, self.ballot, self.epoch, kind, data)
        self.next_index += 1
        self.pending[s.index] = (rid, self.ballot)
        if kind == CONFIG:
            self.stop_at = s.index  # the last slot of this instance
        self._propose_slots([s])

    def _busy(self, rid: Any) -> bool:
        busy = ""
        if self.transferee is not None:
            busy = "leadership transfer"
        elif self.stop_at is not None:
            busy = "a membership change is being applied"
        elif self.next_index - self.commit > self.cfg.max_pending:
            busy = "too many proposals"
        if busy:
            self.out.reply(rid, Reply(BUSY, leader=self.id, detail=busy))
        return bool(busy)

    def _not_leader(self, rid: Any) -> bool:
        if self.role == LEADER:
            return False
        self.out.reply(rid, Reply(NOT_LEADER, leader=self.leader))
        return True

    # ------------------------------------------------------------ refusals

    def _on_nack(self, src: NodeId, m: Nack) -> None:
        self.seen_round = max(self.seen_round, m.promised.round)
        if m.commit > self.commit:
            self._ask(src)
        if m.promised <= self.ballot:
            return  # stickiness, a stale epoch, a learner: nothing about our ballot
        if self.role == LEADER:
            # Preempted: run phase 1 again above the ballot that beat ours. Followers that
            # still hear a live leader refuse it, so this does not fight a real successor.
            self._campaign()
        elif self.role == CANDIDATE:
            self._give_up()

    def _abandon(self) -> None:
        """Stop leading or campaigning: what waited on this ballot learns its fate."""
        for rid, _ in self.pending.values():
            # may still be chosen under the next leader: a retry with the same session
            # is applied at most once either way
            self.out.reply(rid, Reply(UNKNOWN, leader=None))
        self.pending.clear()
        for rid, _ in self.reads.drain():
            self.out.reply(rid, Reply(NOT_LEADER, leader=None))
        self.acks, self.sent_at, self.chosen_ahead = {}, {}, set()
        self.peers = {}
        self.transferee = None
        self.stop_at = None
        self.campaign = None

    # ------------------------------------------------------------ the leader's tick

    def _leader_tick(self) -> None:
        now = self.now
        if now >= self.quorum_due:
            self.quorum_due = now + self.cfg.election_timeout
            active = {p for p, peer in self.peers.items() if peer.active} | {self.id}
            for peer in self.peers.values():
                peer.active = False
            if self.quorums is None or not self.quorums.phase2(active):
                self._abandon()
                self.role = FOLLOWER
                self.leader = None
                self._reset_election_timer()
                return
        if self.transferee is not None and now >= self.transfer_deadline:
            self.transferee = None
        if now >= self.heartbeat_due:
            self.heartbeat_due = now + self.cfg.heartbeat_interval
            self._heartbeat()
            self._retransmit()

    def _heartbeat(self, ctx: int = 0) -> None:
        if not ctx:
            ctx = self.reads.open(self.commit).ctx
        msg = Heartbeat(self.ballot, self.epoch, self.commit, ctx)
        for m in self._members():
            self._send(m, msg)
        self._confirm_reads()

    def _retransmit(self) -> None:
        """Accepts a voter has not acknowledged within a heartbeat interval go again
        (messages get lost; Paxos itself never resends)."""
        due = [i for i, t in self.sent_at.items() if self.now - t >= self.cfg.heartbeat_interval]
        if not due:
            return
        due.sort()
        for v in self.conf.voters:
            if v == self.id:
                continue
            slots, size = [], 0
            for i in due:
                if v not in self.acks[i]:
                    slots.append(self.log[i])
                    size += len(self.log[i].data) + 32
                    if size >= self.cfg.max_batch_bytes:
                        break
            if slots:
                self._send(v, Accept(self.ballot, self.epoch, slots, self.commit))
        for i in due:
            self.sent_at[i] = self.now

    def _on_heartbeat_ack(self, src: NodeId, m: HeartbeatAck) -> None:
        if self.role != LEADER or m.ballot != self.ballot:
            return
        self._heard(src, m.commit)
        peer = self.peers.get(src)
        if peer is not None and m.ctx > peer.acked_ctx:
            peer.acked_ctx = m.ctx
            self._confirm_reads()
        self._maybe_transfer(src)

    # ------------------------------------------------------------ reads

    def _read(self, rid: Any, query: bytes) -> None:
        if self._not_leader(rid):
            return
        if len(self.reads) >= self.cfg.max_pending:
            self.out.reply(rid, Reply(BUSY, leader=self.id, detail="too many reads"))
            return
        if self.commit < self.term_start or self.stop_at is not None:
            self.reads.waiting.append((rid, query))
            return
        r = self.reads.open(self.commit)
        r.waiters.append((rid, query))
        self._heartbeat(ctx=r.ctx)

    def _serve_waiting_reads(self) -> None:
        if self.reads.waiting and self.commit >= self.term_start and self.stop_at is None:
            waiting, self.reads.waiting = self.reads.waiting, []
            for rid, query in waiting:
                self._read(rid, query)

    def _confirm_reads(self) -> None:
        q = self.quorums
        if q is None:
            return

        def confirmed(ctx: int) -> bool:
            acks = {p for p, peer in self.peers.items() if peer.acked_ctx >= ctx}
            return q.phase2(acks | {self.id})

        for r in self.reads.confirm(confirmed):
            for rid, query in r.waiters:
                # the leader applies as it learns: applied >= r.index here
                self.out.reply(rid, Reply(OK, value=self.sm.query(query), leader=self.id))

    # ------------------------------------------------------------ transfer, membership

    def _transfer(self, rid: Any, target: NodeId) -> None:
        if self._not_leader(rid):
            return
        if target == self.id:
            self.out.reply(rid, Reply(OK, leader=self.id))
            return
        if target not in self.conf.voters or target not in self.peers:
            self.out.reply(rid, Reply(REJECTED, detail=f"{target} is not a voter"))
            return
        self.transferee = target
        self.transfer_deadline = self.now + self.cfg.election_timeout
        self._maybe_transfer(target)
        self.out.reply(rid, Reply(OK, leader=self.id, detail="transfer started"))

    def _maybe_transfer(self, src: NodeId) -> None:
        peer = self.peers.get(src)
        if src == self.transferee and peer is not None and peer.commit >= self.commit:
            self._send(src, TimeoutNow(self.ballot, self.epoch))
            self.transferee = None

    def _on_timeout_now(self, src: NodeId, m: TimeoutNow) -> None:
        if self.role != LEADER:
            self._campaign(transfer=True)

    def _change_member(self, rid: Any, req: ChangeMember) -> None:
        if self._not_leader(rid):
            return
        if self.stop_at is not None or self.commit < self.term_start:
            self.out.reply(rid, Reply(BUSY, leader=self.id, detail="a config change is pending"))
            return
        voters, learners = list(self.conf.voters), list(self.conf.learners)
        addrs = {a.node: a for a in self.conf.addresses}
        node, act = req.node, req.action
        if act in ("add_learner", "add_voter") and req.peer and req.http:
            addrs[node] = MemberAddress(node, req.peer, req.http)
        if act == "add_learner" and node not in voters and node not in learners:
            learners.append(node)
        elif act in ("promote", "add_voter") and node not in voters:
            if node in learners:
                learners.remove(node)
            voters.append(node)
        elif act == "remove" and node in learners:
            learners.remove(node)
        elif act == "remove" and node in voters:
            voters.remove(node)
        members = set(voters) | set(learners)
        conf = ConfigState(
            tuple(sorted(voters)),
            tuple(sorted(learners)),
            tuple(addrs[n] for n in sorted(addrs) if n in members),
        )
        if conf == self.conf:
            self.out.reply(rid, Reply(REJECTED, detail=f"{act} {node}: nothing to change"))
            return
        if not conf.voters:
            self.out.reply(rid, Reply(REJECTED, detail="cannot remove the last voter"))
            return
        try:
            self.cfg.quorum(conf.voters)
        except QuorumError as e:
            self.out.reply(rid, Reply(REJECTED, detail=f"{act} {node}: {e}"))
            return
        self._propose(rid, CONFIG, encode(conf))
