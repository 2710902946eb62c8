"""A replica answering for instances others drive: PreAccept, Accept, Commit, Prepare, Fetch.

Every answer that promises something (a PreAcceptOK is a vote, an AcceptOK an acceptance, a
PrepareOK a promise) is written down with ``sync`` before it leaves. A replica votes once per
ballot: a repeated PreAccept at the ballot it already voted in gets the same answer, never
freshly computed attributes (they could differ, and the fast path counts votes).
"""

from __future__ import annotations

from novacron_core.consensus.epaxos.conflicts import merged
from novacron_core.consensus.epaxos.messages import (
    ACCEPTED,
    COMMITTED,
    PREACCEPTED,
    Accept,
    AcceptOK,
    Beacon,
    Commit,
    Fetch,
    Nack,
    PreAccept,
    PreAcceptOK,
    Prepare,
    PrepareOK,
)
from novacron_core.consensus.epaxos.recovery import ORIGINAL
from novacron_core.consensus.epaxos.space import Inst
from novacron_core.consensus.epaxos.state import ReplicaState
from novacron_core.machine import NodeId

FETCH_LIMIT = 256  # instances answered per Fetch (bounded work per message)


class Acceptor(ReplicaState):
    def _commit_msg(self, inst: Inst) -> Commit:
        assert inst.cmd is not None
        return Commit(inst.owner, inst.num, inst.cmd, inst.seq, dict(inst.deps))

    def _on_preaccept(self, src: NodeId, m: PreAccept) -> None:
        inst = self.space.ensure(m.owner, m.num)
        if inst.status == COMMITTED:
            self._send(src, self._commit_msg(inst))
            return
        if m.ballot < inst.bal:
            self._send(src, Nack(m.owner, m.num, m.ballot, inst.bal))
            return
        if inst.vbal == m.ballot and inst.status >= PREACCEPTED and inst.cmd is not None:
            if inst.status == PREACCEPTED:  # a repeat: the same vote again
                ok = PreAcceptOK(m.owner, m.num, m.ballot, inst.seq, dict(inst.deps), inst.eq)
                self._send(src, ok)
            return
        seq, deps = self.conflicts.attributes(m.cmd)
        seq = max(seq, m.seq)
        deps = merged(m.deps, deps)
        eq = m.ballot == 0 and seq == m.seq and deps == m.deps
        inst.bal = m.ballot
        self._note_ballot(m.ballot)
        self._set(inst, PREACCEPTED, m.cmd, seq, deps, m.ballot, eq)
        self._persist(inst)
        self._send(src, PreAcceptOK(m.owner, m.num, m.ballot, seq, dict(deps), eq))

    def _on_accept(self, src: NodeId, m: Accept) -> None:
        inst = self.space.ensure(m.owner, m.num)
        if inst.status == COMMITTED:
            self._send(src, self._commit_msg(inst))
            return
        if m.ballot < inst.bal:
            self._send(src, Nack(m.owner, m.num, m.ballot, inst.bal))
            return
        inst.bal = m.ballot
        self._note_ballot(m.ballot)
        self._set(inst, ACCEPTED, m.cmd, m.seq, dict(m.deps), m.ballot, False)
        self._persist(inst)
        self._send(src, AcceptOK(m.owner, m.num, m.ballot))

    def _on_commit(self, src: NodeId, m: Commit) -> None:
        inst = self.space.ensure(m.owner, m.num)
        self._commit(inst, m.cmd, m.seq, m.deps, announce=False)

    def _prepare_reply(self, inst: Inst, ballot: int) -> PrepareOK:
        """What ``inst`` holds, as a Prepare at ``ballot`` is answered (before the promise).
        The reported ballot is the one the attributes were taken at; the original rule
        reports the single ballot variable instead (see recovery.py)."""
        reported = inst.bal if self.cfg.recovery == ORIGINAL else inst.vbal
        return PrepareOK(
            inst.owner,
            inst.num,
            ballot,
            inst.status,
            inst.cmd,
            inst.seq,
            dict(inst.deps),
            reported,
            inst.eq,
        )

    def _on_prepare(self, src: NodeId, m: Prepare) -> None:
        inst = self.space.ensure(m.owner, m.num)
        if inst.status == COMMITTED:
            self._send(src, self._prepare_reply(inst, m.ballot))
            return
        if m.ballot < inst.bal:
            self._send(src, Nack(m.owner, m.num, m.ballot, inst.bal))
            return
        reply = self._prepare_reply(inst, m.ballot)
        inst.bal = m.ballot
        self._note_ballot(m.ballot)
        self._persist(inst)
        drive = self.drives.get(inst.iid)
        if drive is not None and drive.ballot < m.ballot:
            del self.drives[inst.iid]  # superseded: whoever prepared it drives it now
        self._send(src, reply)

    def _on_fetch(self, src: NodeId, m: Fetch) -> None:
        for owner, num in m.items[:FETCH_LIMIT]:
            inst = self.space.get(owner, num)
            if inst is not None and inst.status == COMMITTED:
                self._send(src, self._commit_msg(inst))

    def _on_beacon(self, src: NodeId, m: Beacon) -> None:
        self.peers_upto[src] = dict(m.executed)
        for owner, num in m.seen.items():
            if owner in self.voters:
                self.space.note(owner, num)
