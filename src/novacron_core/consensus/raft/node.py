"""A sans-IO Raft participant (etcd-io/raft's design, expressed as a :class:`Machine`).

Every input (message, tick, client request) runs to completion and returns one
:class:`Ready`: writes to persist (fsynced before anything is sent, whenever a message or
reply depends on them), messages, replies and the next wake-up. Nothing here reads a clock,
touches a socket or uses global randomness: time arrives as ``now`` and jitter comes from
the ``rng`` the driver passes in, so a simulated run replays exactly.
"""

from __future__ import annotations

import random
from typing import Any

from novacron_core.codec import decode, encode
from novacron_core.consensus.interface import (
    CANDIDATE,
    FOLLOWER,
    LEADER,
    PRE_CANDIDATE,
    GroupStatus,
    Restored,
    SoftState,
)
from novacron_core.consensus.raft.config import RaftConfig, StateMachine
from novacron_core.consensus.raft.log import RaftLog
from novacron_core.consensus.raft.messages import (
    BUSY,
    CONFIG,
    NOOP,
    NORMAL,
    NOT_LEADER,
    OK,
    REJECTED,
    UNKNOWN,
    Append,
    AppendResp,
    ChangeMember,
    ConfigState,
    Entry,
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
from novacron_core.consensus.raft.progress import PROBE, REPLICATE, SNAPSHOT, Progress
from novacron_core.consensus.raft.reads import ReadQueue
from novacron_core.consensus.raft.storage import (
    AppendEntries,
    HardState,
    Recovered,
    SaveSnapshot,
)
from novacron_core.machine import NodeId, Ready

__all__ = ["CANDIDATE", "FOLLOWER", "LEADER", "PRE_CANDIDATE", "RaftNode"]


class RaftNode:
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
            sm.restore(recovered.snap_data)
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
        self.quorum_due = 0.0
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
        self._incoming: _Incoming | None = None
        # Abstain from elections: never grant a Vote or PreVote, never campaign, even while
        # the configuration lists us as a voter. Appends and snapshots are still accepted
        # and acknowledged (those acks are truthful). Set by a runtime whose durable state
        # was lost (its log may lack entries it acknowledged before, so its vote could
        # elect a leader missing committed entries) until it was removed and re-added.
        self.abstain = False

    # ------------------------------------------------------------------ Machine interface

    def on_start(self, now: float) -> Ready:
        self._begin(now)
        self._reset_election_timer()
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

    # ------------------------------------------------------------------ plumbing

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

    # ------------------------------------------------------------------ configuration

    def _reload_conf(self) -> None:
        """Configurations take effect when appended (dissertation §4.1), so the latest config
        entry in the log rules, committed or not; recompute after a truncation."""
        self.conf, self.conf_index = self.log.snap.config, self.log.snap.index
        for e in reversed(self.log.entries):
            if e.kind == CONFIG:
                self.conf, self.conf_index = decode(e.data, ConfigState), e.index
                break
        self._sync_progress()

    def _note_appended(self, entries: list[Entry], truncated: bool) -> None:
        if truncated:
            self._reload_conf()
            return
        for e in entries:
            if e.kind == CONFIG:
                self.conf, self.conf_index = decode(e.data, ConfigState), e.index
                self._sync_progress()

    def _sync_progress(self) -> None:
        if self.role != LEADER:
            return
        members = set(self.conf.members()) - {self.id}
        for p in list(self.progress):
            if p not in members:
                del self.progress[p]
        for p in members:
            if p not in self.progress:
                self.progress[p] = Progress(next=self.log.last_index + 1)

    # ------------------------------------------------------------------ role changes

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
        self.quorum_due = self.now + self.cfg.election_timeout
        # A no-op of our own term: until it commits we cannot know the true commit index
        # (figure 8), so reads and config changes wait for it.
        self.term_start = self.log.last_index + 1
        self._append_local([Entry(self.term, self.term_start, NOOP)])
        self._broadcast_append()

    # ------------------------------------------------------------------ message dispatch

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

    # ------------------------------------------------------------------ follower side

    def _heard_leader(self, src: NodeId) -> None:
        if self.role != FOLLOWER:
            self._become_follower(self.term, src)
        self.leader = src
        self.leader_contact = self.now
        self._reset_election_timer()

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

    def _on_snapshot(self, src: NodeId, m: InstallSnapshot) -> None:
        self._heard_leader(src)
        meta = m.meta
        if meta.index <= self.commit:
            self._send(src, AppendResp(self.term, True, match=self.commit))
            return
        if self.log.matches(meta.index, meta.term):
            # We already hold the entries: just fast-forward the commit index.
            self._commit_to(meta.index)
            self._send(src, AppendResp(self.term, True, match=meta.index))
            return
        self._install_snapshot(src, meta, m.data)

    def _on_snapshot_chunk(self, src: NodeId, m: SnapshotChunk) -> None:
        self._heard_leader(src)
        meta = m.meta
        if meta.index <= self.commit or self.log.matches(meta.index, meta.term):
            self._incoming = None
            self._on_snapshot(src, InstallSnapshot(m.term, meta, b"", m.commit))
            return
        inc = self._incoming
        if inc is None or inc.meta != meta:
            inc = self._incoming = _Incoming(meta)
        if m.done:
            inc.total = m.offset + len(m.data)
        if m.offset > len(inc.data):
            # A piece ahead of a lost one: keep a window's worth, so that only the lost
            # piece needs resending, and say where the gap is.
            if len(inc.early) < self.cfg.snapshot_window:
                inc.early[m.offset] = m.data
        else:
            inc.absorb(m.offset, m.data)
        if inc.total is not None and len(inc.data) >= inc.total:
            self._incoming = None
            self._install_snapshot(src, meta, bytes(inc.data[: inc.total]))
            return
        resp = SnapshotChunkResp(self.term, meta.index, meta.term, len(inc.data), not inc.early)
        self._send(src, resp)

    def _install_snapshot(self, src: NodeId, meta: SnapshotMeta, data: bytes) -> None:
        self.sm.restore(data)
        self.log.compact(meta)
        self.snap_data = data
        self.out.writes.append(SaveSnapshot(meta, data))
        self.out.sync = True
        self.commit = self.applied = meta.index
        self.applied_conf = meta.config
        self._reload_conf()
        self.out.committed.append(Restored(meta.index))
        self._send(src, AppendResp(self.term, True, match=meta.index))

    # ------------------------------------------------------------------ commit and apply

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

    def _hand_off_after_removal(self) -> None:
        best = max(
            (p for p in self.conf.voters if p in self.progress),
            key=lambda p: self.progress[p].match,
            default=None,
        )
        if best is not None:
            self._send(best, TimeoutNow(self.term))
        self._become_follower(self.term, None)

    def _take_snapshot(self) -> None:
        term = self.log.term(self.applied)
        assert term is not None
        meta = SnapshotMeta(self.applied, term, self.applied_conf)
        data = self.sm.snapshot()
        self.log.compact(meta)
        self.snap_data = data
        # Not synced: the full log it replaces is already durable, so losing it is harmless.
        self.out.writes.append(SaveSnapshot(meta, data))

    # ------------------------------------------------------------------ leader side

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

    def _send_snapshot(self, peer: NodeId, pr: Progress) -> None:
        pr.state = SNAPSHOT
        pr.pending_snapshot = self.log.snap.index
        pr.snapshot_sent_at = self.now
        pr.inflight.clear()
        self.stats["snapshots_sent"] += 1
        if len(self.snap_data) <= self.cfg.snapshot_chunk_bytes:
            msg = InstallSnapshot(self.term, self.log.snap, self.snap_data, self.commit)
            self.stats["snapshot_bytes_sent"] += len(self.snap_data)
            self._send(peer, msg)
            return
        # From byte 0: if the follower already holds a prefix (an earlier attempt, another
        # leader), its first answer says so and we skip ahead. Costs a window at most.
        pr.snap_meta, pr.snap_data = self.log.snap, self.snap_data
        pr.snap_offset = pr.snap_acked = 0
        pr.snap_rewound = -1
        self._send_chunks(peer, pr)

    def _send_chunks(self, peer: NodeId, pr: Progress) -> None:
        """Fill the window: chunks up to ``snapshot_window`` beyond what was confirmed."""
        assert pr.snap_meta is not None
        size, data = self.cfg.snapshot_chunk_bytes, pr.snap_data
        limit = pr.snap_acked + self.cfg.snapshot_window * size
        while pr.snap_offset < len(data) and pr.snap_offset < limit:
            chunk = self._chunk(pr, pr.snap_offset)
            self._send(peer, chunk)
            pr.snap_offset += len(chunk.data)

    def _chunk(self, pr: Progress, lo: int) -> SnapshotChunk:
        assert pr.snap_meta is not None
        data = pr.snap_data
        hi = min(lo + self.cfg.snapshot_chunk_bytes, len(data))
        self.stats["snapshot_bytes_sent"] += hi - lo
        return SnapshotChunk(self.term, pr.snap_meta, lo, data[lo:hi], hi == len(data))

    def _on_chunk_resp(self, src: NodeId, m: SnapshotChunkResp) -> None:
        pr = self.progress.get(src)
        if pr is None:
            return
        pr.active = True
        meta = pr.snap_meta
        same = meta is not None and (m.index, m.snap_term) == (meta.index, meta.term)
        if pr.state != SNAPSHOT or not same:
            return  # about a transfer that ended or was replaced
        pr.snapshot_sent_at = self.now  # progress: the transfer is alive, keep it going
        pr.snap_acked = max(pr.snap_acked, m.received)
        if m.received > pr.snap_offset:
            pr.snap_offset = m.received  # it holds more than we sent: skip ahead (resuming)
        elif not m.ok and m.received != pr.snap_rewound and m.received < pr.snap_offset:
            # A piece was lost (the follower holds the ones after it): resend that one,
            # once per gap — every later piece reports the same gap. Were the resend lost
            # too, the transfer stalls until the leader's timeout restarts (resumes) it.
            pr.snap_rewound = m.received
            self._send(src, self._chunk(pr, m.received))
        self._send_chunks(src, pr)

    def _on_append_resp(self, src: NodeId, m: AppendResp) -> None:
        pr = self.progress.get(src)
        if pr is None:
            return
        pr.active = True
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
        if now >= self.quorum_due:
            self.quorum_due = now + self.cfg.election_timeout
            active = 1 + sum(
                1 for v in self.conf.voters if v in self.progress and self.progress[v].active
            )
            for pr in self.progress.values():
                pr.active = False
            if self.cfg.check_quorum and self.id in self.conf.voters and active < self._quorum():
                self._become_follower(self.term, None)
                return
        if self.transferee is not None and now >= self.transfer_deadline:
            self.transferee = None
        if now >= self.heartbeat_due:
            self.heartbeat_due = now + self.cfg.heartbeat_interval
            self._heartbeat()

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

    # ------------------------------------------------------------------ client requests

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

    def _change_member(self, rid: Any, req: ChangeMember) -> None:
        if self._not_leader(rid):
            return
        # One change at a time, and only once our term's no-op committed: otherwise two
        # overlapping single-server changes could form disjoint majorities (Ongaro's fix).
        if self.conf_index > self.commit or self.commit < self.term_start:
            self.out.reply(rid, Reply(BUSY, leader=self.id, detail="a config change is pending"))
            return
        voters, learners = list(self.conf.voters), list(self.conf.learners)
        addrs = {a.node: a for a in self.conf.addresses}
        node, act = req.node, req.action
        adding = act in ("add_learner", "add_voter")
        if adding and req.peer and req.http:
            addrs[node] = MemberAddress(node, req.peer, req.http)
        if act == "add_learner" and node not in voters and node not in learners:
            learners.append(node)
        elif act in ("promote", "add_voter") and node not in voters:
            if node in learners:
                learners.remove(node)
            voters.append(node)
        elif act == "remove" and (node in voters or node in learners):
            if node in learners:
                learners.remove(node)
            else:
                voters.remove(node)
            if not voters:
                self.out.reply(rid, Reply(REJECTED, detail="cannot remove the last voter"))
                return
        # Otherwise the membership stays; an add may still move a member's address.
        members = set(voters) | set(learners)
        conf = ConfigState(
            tuple(sorted(voters)),
            tuple(sorted(learners)),
            tuple(addrs[n] for n in sorted(addrs) if n in members),  # removed: forgotten
        )
        if conf == self.conf:
            self.out.reply(rid, Reply(REJECTED, detail=f"{act} {node}: nothing to change"))
            return
        self._propose(rid, CONFIG, encode(conf))

    def _transfer(self, rid: Any, target: NodeId) -> None:
        if self._not_leader(rid):
            return
        if target == self.id:
            self.out.reply(rid, Reply(OK, leader=self.id))
            return
        if target not in self.conf.voters or target not in self.progress:
            self.out.reply(rid, Reply(REJECTED, detail=f"{target} is not a voter"))
            return
        self.transferee = target
        self.transfer_deadline = self.now + self.cfg.election_timeout
        pr = self.progress[target]
        if pr.match == self.log.last_index:
            self._send(target, TimeoutNow(self.term))
        else:
            # A probe at the follower's believed position: a lost append shows up as a
            # rejection, which restarts replication from where the target really is.
            self._send_append(target, heartbeat=True)
        self.out.reply(rid, Reply(OK, leader=self.id, detail="transfer started"))

    # ------------------------------------------------------------------ introspection

    def lag(self) -> int:
        """How many committed entries this node has yet to apply, as far as it knows."""
        if self.role == LEADER:
            return 0
        return max(0, self.leader_commit - self.applied)

    def soft_state(self) -> SoftState:
        return SoftState(self.role, self.leader, self.term, self.conf)

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


class _Incoming:
    """A chunked snapshot being received: the contiguous prefix, pieces that came early
    (after a lost one; at most a window of them), and the size once the last piece came."""

    __slots__ = ("data", "early", "meta", "total")

    def __init__(self, meta: SnapshotMeta) -> None:
        self.meta = meta
        self.data = bytearray()
        self.early: dict[int, bytes] = {}
        self.total: int | None = None

    def absorb(self, offset: int, data: bytes) -> None:
        """Add a piece starting at or before the prefix's end, then any early ones it
        joins up with."""
        while True:
            end = offset + len(data)
            if end > len(self.data):
                self.data += data[len(self.data) - offset :]
            for k in [k for k in self.early if k + len(self.early[k]) <= len(self.data)]:
                del self.early[k]  # wholly inside the prefix now
            nxt = next((k for k in sorted(self.early) if k <= len(self.data)), None)
            if nxt is None:
                return
            offset, data = nxt, self.early.pop(nxt)


def _node(a: MemberAddress) -> str:
    return a.node
