"""Log replication and what rides on it: appends (pipelined, with probes and flow
control), commit and apply, heartbeats with ReadIndex rounds and the lease, CheckQuorum,
proposals and reads."""

from __future__ import annotations

from typing import Any

from novacron_core.codec import decode
from novacron_core.consensus.interface import (
    LEADER,
)
from novacron_core.consensus.raft.messages import (
    BUSY,
    CONFIG,
    NORMAL,
    NOT_LEADER,
    OK,
    UNKNOWN,
    Append,
    AppendResp,
    ConfigState,
    Entry,
    Reply,
    TimeoutNow,
)
from novacron_core.consensus.raft.progress import PROBE, REPLICATE, SNAPSHOT
from novacron_core.consensus.raft.snapshots import SnapshotTransfer
from novacron_core.consensus.raft.storage import (
    AppendEntries,
)
from novacron_core.machine import NodeId


class Replication(SnapshotTransfer):
    def _on_append(self, src: NodeId, m: Append) -> None:
        self._heard_leader(src)
        self.leader_commit = max(self.leader_commit, m.commit)
        if m.prev_index < self.commit:
            self._send(src, AppendResp(self.term, True, match=self.commit, ctx=m.ctx))
            return
        if not self.log.matches(m.prev_index, m.prev_term):
            hint = self.log.find_by_term(min(m.prev_index, self.log.last_index), m.prev_term)
            self._send(
                src,
                AppendResp(
                    self.term,
                    False,
                    match=m.prev_index,
                    hint_index=hint,
                    hint_term=self.log.term(hint) or 0,
                    ctx=m.ctx,
                ),
            )
            return
        new = m.entries[self.log.find_conflict(m.entries) :]
        if new:
            if new[0].index <= self.commit:
                raise AssertionError(f"{self.id}: leader rewrites committed entry {new[0]}")
            truncated = new[0].index <= self.log.last_index
            self.log.append(list(new))
            self.out.writes.append(AppendEntries(list(new)))
            self.out.sync = True
            self._note_appended(new, truncated)
        last_new = m.prev_index + len(m.entries)
        self._commit_to(min(m.commit, last_new))
        self._send(src, AppendResp(self.term, True, match=last_new, ctx=m.ctx))

    def _commit_to(self, index: int) -> None:
        if index > self.commit:
            self.commit = index
            self._apply()

    def _apply(self) -> None:
        removed_self = False
        while self.applied < self.commit:
            i = self.applied + 1
            e = self.log.entry(i)
            result: bytes | None = None
            if e.kind == NORMAL:
                result = self.sm.apply(i, e.data)
            elif e.kind == CONFIG:
                self.applied_conf = decode(e.data, ConfigState)
                removed_self = self.id not in self.applied_conf.voters
            self.applied = i
            self.out.committed.append(e)
            waiter = self.pending.pop(i, None)
            if waiter is not None:
                rid, term = waiter
                status = OK if term == e.term else UNKNOWN
                self.out.reply(rid, Reply(status, value=result, leader=self.leader))
        if removed_self and self.role == LEADER and self.applied >= self.conf_index:
            self._hand_off_after_removal()
        if self.applied - self.log.snap.index >= self.cfg.snapshot_entries:
            self._take_snapshot()

    def _append_local(self, entries: list[Entry]) -> None:
        self.log.append(entries)
        self.out.writes.append(AppendEntries(entries))
        self.out.sync = True
        self._note_appended(entries, False)
        self._maybe_commit()

    def _broadcast_append(self) -> None:
        for p in self.progress:
            self._send_append(p)

    def _send_append(self, peer: NodeId, ctx: int = 0, heartbeat: bool = False) -> None:
        pr = self.progress[peer]
        if pr.state == SNAPSHOT:
            if ctx:  # keep it counting towards ReadIndex rounds and CheckQuorum
                self._send(peer, Append(self.term, 0, 0, [], 0, ctx))
            return
        if not heartbeat:
            if pr.state == PROBE and pr.probe_sent:
                return
            if pr.state == REPLICATE and len(pr.inflight) >= self.cfg.max_inflight:
                return
        prev = pr.next - 1
        prev_term = self.log.term(prev)
        if prev_term is None:
            self._send_snapshot(peer, pr)
            return
        entries: list[Entry] = []
        if pr.next <= self.log.last_index and not (heartbeat and pr.state == REPLICATE):
            entries = self.log.slice(pr.next, self.log.last_index + 1, self.cfg.max_append_bytes)
        if not entries and not heartbeat and pr.state == REPLICATE:
            return  # nothing new: an empty append would only ping-pong with its answer
        if entries:
            if pr.state == REPLICATE:
                pr.next = entries[-1].index + 1
                pr.inflight.append(entries[-1].index)
            else:
                pr.probe_sent = True
        elif pr.state == PROBE:
            pr.probe_sent = True
        self._send(peer, Append(self.term, prev, prev_term, entries, self.commit, ctx))

    def _on_append_resp(self, src: NodeId, m: AppendResp) -> None:
        pr = self.progress.get(src)
        if pr is None:
            return
        pr.heard_at = self.now
        if m.ctx > pr.acked_ctx:
            pr.acked_ctx = m.ctx
            self._confirm_reads()
        if m.success:
            advanced = m.match > pr.match
            if advanced:
                pr.match = m.match
            pr.next = max(pr.next, m.match + 1)
            pr.free_to(m.match)
            if pr.state == PROBE or (pr.state == SNAPSHOT and pr.match >= pr.pending_snapshot):
                pr.become_replicate()
            if advanced:
                self._maybe_commit()
                if self.role != LEADER:
                    return
                if src == self.transferee and pr.match == self.log.last_index:
                    self._send(src, TimeoutNow(self.term))
            self._send_append(src)
            return
        rejected = m.match
        if pr.state == SNAPSHOT or rejected <= pr.match:
            return  # stale
        if pr.state == PROBE and rejected != pr.next - 1:
            return  # answers an older probe
        probe = m.hint_index
        if m.hint_term:
            probe = self.log.find_by_term(m.hint_index, m.hint_term)
        pr.next = max(min(rejected, probe + 1), pr.match + 1)
        pr.become_probe()
        self._send_append(src)

    def _maybe_commit(self) -> None:
        matches = sorted(
            (
                self.log.last_index if v == self.id else self.progress[v].match
                for v in self.conf.voters
                if v == self.id or v in self.progress
            ),
            reverse=True,
        )
        q = self._quorum()
        if len(matches) < q:
            return
        n = matches[q - 1]
        # Only entries of the current term commit by counting replicas (figure 8).
        if n > self.commit and self.log.term(n) == self.term:
            self._commit_to(n)
            if self.role == LEADER and self.reads.waiting and self.commit >= self.term_start:
                waiting, self.reads.waiting = self.reads.waiting, []
                for rid, q_ in waiting:
                    self._read(rid, q_)

    def _leader_tick(self) -> None:
        now = self.now
        if self._overdue() <= self._lag_tolerance() and now >= self.grace_until:
            self.grace_used = False  # on time again: a later starvation gets its grace
        # CheckQuorum, every tick: step down once a majority has been silent for the window
        # (not while starved: the answers may be queued, unread).
        if (
            self.cfg.check_quorum
            and self.id in self.conf.voters
            and now >= self.grace_until
            and now - self._quorum_heard() > self._quorum_window()
        ):
            self._become_follower(self.term, None)
            return
        if self.transferee is not None and now >= self.transfer_deadline:
            self.transferee = None
        if now >= self.heartbeat_due:
            self.heartbeat_due = now + self.cfg.heartbeat_interval
            self._heartbeat()

    def _quorum_window(self) -> float:
        w = self.cfg.check_quorum_window
        return 2 * self.cfg.election_timeout if w is None else w

    def _quorum_heard(self) -> float:
        """The latest time by which a majority of voters (this leader counts as now) had
        answered: the quorum-th most recent answer."""
        heard = sorted(
            (
                self.now if v == self.id else self.progress[v].heard_at
                for v in self.conf.voters
                if v == self.id or v in self.progress
            ),
            reverse=True,
        )
        q = self._quorum()
        return heard[q - 1] if len(heard) >= q else float("-inf")

    def _heartbeat(self) -> None:
        round_ = self.reads.open(self.commit, self.now)
        for p, pr in self.progress.items():
            if pr.state == SNAPSHOT and self.now - pr.snapshot_sent_at > self.cfg.election_timeout:
                pr.become_probe()  # the snapshot or its answer was lost: start over
            if pr.state == PROBE:
                pr.probe_sent = False
            self._send_append(p, ctx=round_.ctx, heartbeat=True)
        self._confirm_reads()

    def _confirm_reads(self) -> None:
        acked = [self.reads.ctx if v == self.id else 0 for v in self.conf.voters]
        for i, v in enumerate(self.conf.voters):
            if v in self.progress:
                acked[i] = self.progress[v].acked_ctx
        lease = self.cfg.election_timeout * (1 - self.cfg.lease_drift)
        for r in self.reads.confirm(acked, self._quorum(), lease):
            for rid, query in r.waiters:
                # The leader applies synchronously on commit, so applied >= r.index here.
                self.out.reply(rid, Reply(OK, value=self.sm.query(query), leader=self.id))

    def _not_leader(self, rid: Any) -> bool:
        if self.role == LEADER:
            return False
        self.out.reply(rid, Reply(NOT_LEADER, leader=self.leader))
        return True

    def _propose(self, rid: Any, kind: int, data: bytes) -> None:
        if self._not_leader(rid):
            return
        if self.transferee is not None:
            self.out.reply(rid, Reply(BUSY, leader=self.id, detail="leadership transfer"))
            return
        if len(self.pending) >= self.cfg.max_pending:
            self.out.reply(rid, Reply(BUSY, leader=self.id, detail="too many proposals"))
            return
        self.stats["proposals"] += 1
        e = Entry(self.term, self.log.last_index + 1, kind, data)
        self.pending[e.index] = (rid, self.term)
        self._append_local([e])
        self._broadcast_append()

    def _read(self, rid: Any, query: bytes) -> None:
        if self._not_leader(rid):
            return
        if len(self.reads) >= self.cfg.max_pending:
            self.out.reply(rid, Reply(BUSY, leader=self.id, detail="too many reads"))
            return
        if self.commit < self.term_start:
            self.reads.waiting.append((rid, query))
            return
        if self.cfg.read_mode == "lease" and self.now < self.reads.lease_until:
            self.out.reply(rid, Reply(OK, value=self.sm.query(query), leader=self.id))
            return
        r = self.reads.open(self.commit, self.now)
        r.waiters.append((rid, query))
        for v in self.conf.voters:
            if v in self.progress:
                self._send_append(v, ctx=r.ctx, heartbeat=True)
        self._confirm_reads()
