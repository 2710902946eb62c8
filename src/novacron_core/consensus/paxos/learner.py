"""The learner: the chosen prefix, applying it in order, membership epochs, snapshots and
catch-up.

A slot is known chosen in two ways. From the leader: it says its commit index, and a slot
up to it that this member accepted *in the leader's ballot* holds the chosen value (a
ballot proposes one value per slot). From anyone: a ``Learn`` carries chosen slots, or an
``InstallSnapshot`` the state they add up to. Catch-up is pulled: a member that sees a
message from someone with a longer chosen prefix (or a later epoch) sends it ``CatchUp``,
and asks again while a ``Learn`` leaves it behind.

Epochs: a membership change is the last slot of one Paxos instance (Lamport, Malkhi and
Zhou's "Stoppable Paxos"): no slot after it is ever proposed in that instance, and once it
is applied the next instance starts with the new voters and fresh phase 1. Accepted slots
of the old instance beyond the change can never be chosen (the proposer of the change saw
every chosen slot before it in its phase 1), so they are dropped.
"""

from __future__ import annotations

from novacron_core.codec import decode
from novacron_core.consensus.interface import (
    COMMAND,
    CONFIG,
    FOLLOWER,
    LEADER,
    OK,
    UNKNOWN,
    ConfigState,
    Reply,
    Restored,
)
from novacron_core.consensus.paxos.acceptor import Acceptor
from novacron_core.consensus.paxos.messages import (
    Ballot,
    CatchUp,
    InstallSnapshot,
    Learn,
    Slot,
    SnapshotMeta,
    TimeoutNow,
)
from novacron_core.consensus.paxos.storage import Accepts, Commit, SaveSnapshot
from novacron_core.machine import NodeId


class Learner(Acceptor):
    def _learn_commit(self, src: NodeId, ballot: Ballot, commit: int) -> None:
        """The leader of ``ballot`` says everything up to ``commit`` is chosen."""
        self.leader_commit = max(self.leader_commit, commit)
        i = self.commit
        while i < commit:
            s = self.log.get(i + 1)
            if s is None or s.ballot != ballot:
                break
            i += 1
        if i > self.commit:
            self._commit_to(i)
        if commit > self.commit:
            self._ask(src)

    def _ask(self, src: NodeId, now: bool = False) -> None:
        """Ask ``src`` for the chosen slots we lack (at most once per heartbeat interval,
        unless ``now``: its last answer left us behind)."""
        if now or self.now - self.catchup_at >= self.cfg.heartbeat_interval:
            self.catchup_at = self.now
            self._send(src, CatchUp(self.epoch, self.commit))

    def _commit_to(self, index: int) -> None:
        if index <= self.commit:
            return
        self.commit = index
        self.out.writes.append(Commit(index))
        self._apply()

    def _apply(self) -> None:
        while self.applied < self.commit:
            i = self.applied + 1
            s = self.log[i]
            result: bytes | None = None
            if s.kind == COMMAND:
                result = self.sm.apply(i, s.data)
            self.applied = i
            self.out.committed.append(s)
            waiter = self.pending.pop(i, None)
            if waiter is not None:
                rid, ballot = waiter
                status = OK if s.ballot == ballot else UNKNOWN
                self.out.reply(rid, Reply(status, value=result, leader=self.leader))
            if s.kind == CONFIG:
                self._enter_epoch(i, decode(s.data, ConfigState))
        if self.role == LEADER:
            self._serve_waiting_reads()
        if self.applied - self.snap.index >= self.cfg.snapshot_entries:
            self._take_snapshot()

    def _enter_epoch(self, index: int, conf: ConfigState) -> None:
        """The membership change at ``index`` is applied: the next instance begins."""
        was_leader = self.role == LEADER
        old_members = self._members()
        known = {p: peer.commit for p, peer in self.peers.items()}
        self.epoch += 1
        self._set_conf(conf)
        self.log = {i: s for i, s in self.log.items() if i <= self.commit or s.epoch == self.epoch}
        if self.role != FOLLOWER:
            self._abandon()
            self.role = FOLLOWER
        self.leader = None
        self._reset_election_timer()
        if not was_leader:
            return
        # Tell the others at once (they would otherwise learn it from the next leader's
        # messages), then lead the new instance, or hand it to the best-placed new voter.
        chosen = [self.log[i] for i in range(index, self.commit + 1) if i in self.log]
        for m in sorted(set(old_members) | set(self._members())):
            self._send(m, Learn(self.epoch - 1, chosen, self.commit))
        if self._voter():
            self._campaign()
        elif self.conf.voters:
            target = max(
                (v for v in self.conf.voters if v != self.id),
                key=lambda v: (known.get(v, -1), v),
                default=None,
            )
            if target is not None:
                self._send(target, TimeoutNow(self.ballot, self.epoch))

    # ------------------------------------------------------------ catch-up

    def _on_catch_up(self, src: NodeId, m: CatchUp) -> None:
        if m.commit >= self.commit:
            return
        if m.commit < self.snap.index:
            self._send(src, InstallSnapshot(self.snap, self.snap_data, self.commit))
            return
        slots: list[Slot] = []
        size = 0
        for i in range(m.commit + 1, self.commit + 1):
            s = self.log[i]
            slots.append(s)
            size += len(s.data) + 32
            if size >= self.cfg.max_batch_bytes:
                break
        self._send(src, Learn(self.epoch, slots, self.commit))

    def _on_learn(self, src: NodeId, m: Learn) -> None:
        took: list[Slot] = []
        for s in m.slots:
            nxt = self.commit + len(took) + 1
            if s.index < nxt:
                continue
            if s.index > nxt:
                break
            took.append(s)
        if took:
            for s in took:
                self.log[s.index] = s
            self.out.writes.append(Accepts(took))
            self._commit_to(took[-1].index)
        self._after_catch_up(src, m.commit, bool(took))

    def _on_install_snapshot(self, src: NodeId, m: InstallSnapshot) -> None:
        meta = m.meta
        if meta.index > self.commit:
            self._install(meta, m.data)
        self._after_catch_up(src, m.commit, meta.index > self.commit)

    def _after_catch_up(self, src: NodeId, their_commit: int, progressed: bool) -> None:
        self.leader_commit = max(self.leader_commit, their_commit if self.leader == src else 0)
        if their_commit > self.commit:
            self._ask(src, now=progressed)
        if self.campaign is not None:
            self._tally()  # a candidate may have been waiting for this

    def _install(self, meta: SnapshotMeta, data: bytes) -> None:
        self.sm.restore(data)
        epoch_changed = meta.epoch != self.epoch
        self.snap, self.snap_data = meta, data
        self.commit = self.applied = meta.index
        self.epoch = meta.epoch
        self._set_conf(meta.config)
        self.log = {i: s for i, s in self.log.items() if i > meta.index and s.epoch == meta.epoch}
        self.out.writes.append(SaveSnapshot(meta, data))
        self.out.sync = True
        self.out.committed.append(Restored(meta.index))
        for i in [i for i in self.pending if i <= meta.index]:
            rid, _ = self.pending.pop(i)
            self.out.reply(rid, Reply(UNKNOWN, leader=self.leader))
        if epoch_changed and self.role != FOLLOWER:
            self._abandon()
            self.role = FOLLOWER
            self.leader = None
            self._reset_election_timer()

    def _take_snapshot(self) -> None:
        meta = SnapshotMeta(self.applied, self.epoch, self.conf)
        data = self.sm.snapshot()
        self.snap, self.snap_data = meta, data
        self.log = {i: s for i, s in self.log.items() if i > meta.index}
        # Not synced: the slots it replaces are durable, so losing it is harmless.
        self.out.writes.append(SaveSnapshot(meta, data))
