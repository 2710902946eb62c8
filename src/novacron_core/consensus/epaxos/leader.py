"""A replica driving instances: its own commands (Phase 1, then the fast path or Paxos-Accept)
and instances it takes over (Explicit Prepare, then what ``recovery.decide`` says).

Fast path: the owner sends PreAccept at ballot 0 with the attributes it computed; once the
``2F - 1`` other members of a fast quorum answered with those very attributes (``eq``), the
instance is committed after one round trip. Otherwise (a conflict added a dependency, or a
replica stays silent past ``slow_path_after``) the union of ``F`` answers is accepted by a
majority: two round trips. A replica taking an instance over never uses the fast path.
"""

from __future__ import annotations

from typing import Any

from novacron_core.consensus.epaxos.acceptor import Acceptor
from novacron_core.consensus.epaxos.conflicts import merged
from novacron_core.consensus.epaxos.messages import (
    ACCEPTED,
    COMMITTED,
    PREACCEPTED,
    Accept,
    AcceptOK,
    Command,
    Deps,
    Nack,
    PreAccept,
    PreAcceptOK,
    Prepare,
    PrepareOK,
)
from novacron_core.consensus.epaxos.recovery import ACCEPT, COMMIT, decide
from novacron_core.consensus.epaxos.space import Inst
from novacron_core.consensus.epaxos.state import (
    ACCEPT_PHASE,
    PREACCEPT_PHASE,
    PREPARE_PHASE,
    Drive,
    Waiter,
)
from novacron_core.consensus.interface import BUSY, Reply
from novacron_core.machine import NodeId


class Leader(Acceptor):
    # ------------------------------------------------------------ own commands

    def _propose(self, waiter: Waiter, cmd: Command) -> None:
        num = self.next_num
        self.next_num += 1
        inst = self.space.ensure(self.id, num)
        seq, deps = self.conflicts.attributes(cmd)
        self._set(inst, PREACCEPTED, cmd, seq, deps, 0, True)
        self._persist(inst)
        self.waiters[inst.iid] = waiter
        self.stats["proposals"] += 1
        drive = Drive(
            inst,
            0,
            PREACCEPT_PHASE,
            recovery=False,
            resend_at=self.now + self.cfg.resend_interval,
            slow_at=self.now + self.cfg.slow_path_after,
        )
        self.drives[inst.iid] = drive
        self._broadcast(PreAccept(self.id, num, 0, cmd, seq, dict(deps)))
        self._tally_preaccept(drive)

    def _on_preaccept_ok(self, src: NodeId, m: PreAcceptOK) -> None:
        drive = self.drives.get((m.owner, m.num))
        if drive is None or drive.phase != PREACCEPT_PHASE or drive.ballot != m.ballot:
            return
        drive.oks[src] = m
        self._tally_preaccept(drive)

    def _tally_preaccept(self, drive: Drive) -> None:
        inst, oks = drive.inst, drive.oks
        if inst.bal != drive.ballot:
            del self.drives[inst.iid]  # promised a higher ballot since
            return
        others = len(self.voters) - 1
        if not drive.recovery:
            need = self.fast_quorum - 1
            votes = sum(1 for r in oks.values() if r.eq)
            if votes >= need:
                assert inst.cmd is not None
                self.stats["fast_path"] += 1
                self._commit(inst, inst.cmd, inst.seq, inst.deps, announce=True)
                return
            hopeless = len(oks) - votes > others - need
            waited = self.now >= drive.slow_at
            if len(oks) < self.f or not (hopeless or waited or len(oks) == others):
                return
        elif len(oks) < self.f:
            return
        seq, deps = inst.seq, dict(inst.deps)
        for r in oks.values():
            seq = max(seq, r.seq)
            deps = merged(deps, r.deps)
        self.stats["slow_path"] += 1
        assert inst.cmd is not None
        self._start_accept(drive, inst.cmd, seq, deps)

    def _start_accept(self, drive: Drive, cmd: Command, seq: int, deps: Deps) -> None:
        inst = drive.inst
        drive.phase = ACCEPT_PHASE
        drive.accepted = set()
        drive.resend_at = self.now + self.cfg.resend_interval
        self._set(inst, ACCEPTED, cmd, seq, deps, drive.ballot, False)
        self._persist(inst)
        self._broadcast(Accept(inst.owner, inst.num, drive.ballot, cmd, seq, dict(deps)))
        self._tally_accept(drive)

    def _on_accept_ok(self, src: NodeId, m: AcceptOK) -> None:
        drive = self.drives.get((m.owner, m.num))
        if drive is None or drive.phase != ACCEPT_PHASE or drive.ballot != m.ballot:
            return
        drive.accepted.add(src)
        self._tally_accept(drive)

    def _tally_accept(self, drive: Drive) -> None:
        inst = drive.inst
        if inst.bal != drive.ballot:
            del self.drives[inst.iid]
            return
        if len(drive.accepted) >= self.f:
            assert inst.cmd is not None
            self._commit(inst, inst.cmd, inst.seq, inst.deps, announce=True)

    def _on_nack(self, src: NodeId, m: Nack) -> None:
        iid = (m.owner, m.num)
        self._note_ballot(m.promised)
        if m.promised > self.promised_seen.get(iid, 0):
            self.promised_seen[iid] = m.promised
        drive = self.drives.get(iid)
        if drive is not None and drive.ballot == m.ballot:
            # Someone took the instance over: let them finish it (its waiter, if ours,
            # stays: it is answered when the instance executes, whatever decided it).
            del self.drives[iid]

    # ------------------------------------------------------------ taking an instance over

    def _recover(self, inst: Inst) -> None:
        """Explicit Prepare at a ballot above any this replica has seen for ``inst``."""
        if inst.status == COMMITTED or self.abstain:
            return
        b = self._ballot_above(max(inst.bal, self.promised_seen.get(inst.iid, 0)))
        mine = self._prepare_reply(inst, b)  # read before the promise (see recovery.py)
        inst.bal = b
        self._persist(inst)
        self.stats["recoveries"] += 1
        drive = Drive(
            inst, b, PREPARE_PHASE, recovery=True, resend_at=self.now + self.cfg.resend_interval
        )
        drive.prepared.append((self.id, mine))
        self.drives[inst.iid] = drive
        self._broadcast(Prepare(inst.owner, inst.num, b))
        self._tally_prepare(drive)

    def _on_prepare_ok(self, src: NodeId, m: PrepareOK) -> None:
        drive = self.drives.get((m.owner, m.num))
        if drive is None or drive.phase != PREPARE_PHASE or drive.ballot != m.ballot:
            return
        if any(s == src for s, _ in drive.prepared):
            return
        drive.prepared.append((src, m))
        self._tally_prepare(drive)

    def _tally_prepare(self, drive: Drive) -> None:
        inst = drive.inst
        if inst.bal != drive.ballot:
            del self.drives[inst.iid]
            return
        if len(drive.prepared) < self.f + 1:
            return
        d = decide(inst.owner, drive.prepared, self.f, self.cfg.recovery)
        if d.action == COMMIT:
            assert d.deps is not None
            self._commit(inst, d.cmd, d.seq, d.deps, announce=True)
        elif d.action == ACCEPT:
            assert d.deps is not None
            self._start_accept(drive, d.cmd, d.seq, d.deps)
        else:  # Phase 1 again, at this ballot, slow path only
            # fresh attributes, as the owner computes them (the paper's "Phase 1 at line 2")
            seq, deps = self.conflicts.attributes(d.cmd)
            drive.phase = PREACCEPT_PHASE
            drive.oks = {}
            drive.resend_at = self.now + self.cfg.resend_interval
            self._set(inst, PREACCEPTED, d.cmd, seq, deps, drive.ballot, False)
            self._persist(inst)
            self._broadcast(PreAccept(inst.owner, inst.num, drive.ballot, d.cmd, seq, dict(deps)))
            self._tally_preaccept(drive)

    # ------------------------------------------------------------ timers

    def _drive_timers(self) -> None:
        """Resend what is unanswered; stop waiting for a fast quorum that does not come."""
        now = self.now
        for drive in list(self.drives.values()):
            if drive.inst.iid not in self.drives:
                continue
            if drive.phase == PREACCEPT_PHASE and not drive.recovery and now >= drive.slow_at:
                self._tally_preaccept(drive)
                if drive.inst.iid not in self.drives or drive.phase != PREACCEPT_PHASE:
                    continue
            if now < drive.resend_at:
                continue
            drive.resend_at = now + self.cfg.resend_interval
            inst = drive.inst
            msg: Any
            if drive.phase == PREACCEPT_PHASE:
                assert inst.cmd is not None
                done = set(drive.oks)
                # (a ballot-0 drive never changes its attributes: a vote is for exactly them)
                msg = PreAccept(
                    inst.owner, inst.num, drive.ballot, inst.cmd, inst.seq, dict(inst.deps)
                )
            elif drive.phase == ACCEPT_PHASE:
                assert inst.cmd is not None
                done = drive.accepted
                msg = Accept(inst.owner, inst.num, drive.ballot, inst.cmd, inst.seq, inst.deps)
            else:
                done = {s for s, _ in drive.prepared}
                msg = Prepare(inst.owner, inst.num, drive.ballot)
            for v in self._others():
                if v not in done:
                    self._send(v, msg)

    def _drive_wake(self) -> float | None:
        at: float | None = None
        for d in self.drives.values():
            t = d.resend_at
            if d.phase == PREACCEPT_PHASE and not d.recovery and self.now < d.slow_at < t:
                t = d.slow_at
            if at is None or t < at:
                at = t
        return at

    def _busy(self, rid: Any, detail: str) -> None:
        self.out.reply(rid, Reply(BUSY, detail=detail))
