"""Sutra's counterexample to EPaxos's recovery, replayed message by message.

P. Sutra, "On the correctness of Egalitarian Paxos" (Information Processing Letters 2020,
arXiv:1906.10917) gives a 24-step TLA+ trace (``tla+/CounterExample.tla`` in
github.com/otrack/on-epaxos-correctness) of the paper's own specification in which two
replicas commit instance ``p1.1`` with different dependencies: the specification keeps one
ballot per instance, a promise overwrites the ballot the attributes were accepted at, and
recovery's "take the accepted value of the highest ballot" then picks a stale value.

The trace, step by step, on three replicas whose fast quorums are ``p1: {p1, p3}``,
``p2: {p1, p2}``, ``p3: {p2, p3}`` (messages outside them are simply never delivered here):

1. p3 proposes c1 as p3.1; 2. p1 proposes c2 as p1.1 (both write key ``x``);
3. p3 pre-accepts p1.1 (depending on p3.1);
4-7. p3 takes p1.1 over with {p2, p3}: p2 has not seen it; p3 ends with p1.1 *accepted at
   ballot 1* depending on p3.1 (its Accept to p2 is lost);
8-11. p2 takes p1.1 over with {p1, p2}: the owner p1 answers, so Phase 1 again;
12-14. p1 pre-accepts and then *accepts at ballot 2* attributes without p3.1 (p1's
   AcceptOK to p2 is held back until step 23);
15-16. p1 takes its own p1.1 over with {p1, p3} at ballot 3: p3 promises (its answer is lost);
17-20. and again at ballot 4: now both p1 and p3 report ballot 3 (the promise), though p1's
   attributes are from ballot 2 and p3's from ballot 1;
21. p1 picks p3's (the specification's CHOOSE may) and sends Accept at ballot 4;
22. p3 accepts: p1 commits p1.1 depending on p3.1;
23-24. p2 receives p1's old AcceptOK for ballot 2 and commits p1.1 *without* p3.1.

Two adaptations, both forced by our recovery being stricter than the specification: our
step 7 runs Phase 1 again at ballot 1 (with p2) before accepting, because p3's pre-accept is
not the owner's unchanged attributes (the specification's rule accepts it directly); the end
state of that step is the same (p3 accepted at ballot 1, the Accept to p2 lost). And our
ballots are ``round << 8 | rank`` (so "ballot 3" is round 3).

With the original single-ballot rule (``EPaxosConfig(recovery="original")``) the trace ends
in two different commits of p1.1; with ours (two ballots, the accepted one reported) p1
picks its own ballot-2 attributes and every replica commits the same.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from novacron_core.codec import encode
from novacron_core.consensus.epaxos import CORRECTED, ORIGINAL, EPaxosConfig, EPaxosReplica
from novacron_core.consensus.epaxos.messages import (
    COMMITTED,
    Accept,
    AcceptOK,
    Commit,
    PreAccept,
    PreAcceptOK,
    Prepare,
    PrepareOK,
)
from novacron_core.consensus.epaxos.storage import MemoryStorage
from novacron_core.consensus.interface import Propose
from novacron_core.consensus.kv import PUT, KVCommand, KVStore
from novacron_core.machine import Ready

NAMES = ("p1", "p2", "p3")


class Trace:
    """Three replicas whose messages wait in per-recipient queues until a step delivers or
    drops them; time never advances, so no timer interferes."""

    def __init__(self, rule: str) -> None:
        cfg = EPaxosConfig(recover_after=1000.0, recovery=rule)
        self.disks = {n: MemoryStorage() for n in NAMES}
        self.nodes = {
            n: EPaxosReplica(n, self.disks[n].load(), KVStore(), random.Random(1), cfg, NAMES)
            for n in NAMES
        }
        self.queue: list[tuple[str, str, Any]] = []  # (src, dst, msg) in send order
        self.replies: list[Any] = []
        for n in NAMES:
            self._handle(n, self.nodes[n].on_start(0.0))

    def _handle(self, name: str, ready: Ready) -> None:
        self.disks[name].apply(ready.writes)
        self.queue.extend((name, dst, msg) for dst, msg in ready.messages)
        self.replies.extend(r for _, r in ready.replies)

    def propose(self, node: str, value: bytes) -> None:
        cmd = Propose(encode(KVCommand(PUT, "x", value)))
        self._handle(node, self.nodes[node].on_request(0.0, ("client", node), cmd))

    def recover(self, node: str, owner: str, num: int) -> None:
        self._handle(node, self.nodes[node].recover(0.0, owner, num))

    def _take(self, src: str, dst: str, kind: type, iid: tuple[str, int]) -> Any:
        for i, (s, d, m) in enumerate(self.queue):
            if s == src and d == dst and isinstance(m, kind) and (m.owner, m.num) == iid:
                del self.queue[i]
                return m
        raise AssertionError(f"no {kind.__name__} of {iid} from {src} to {dst}: {self.queue}")

    def deliver(self, src: str, dst: str, kind: type, iid: tuple[str, int] = ("p1", 1)) -> None:
        msg = self._take(src, dst, kind, iid)
        self._handle(dst, self.nodes[dst].on_message(0.0, src, msg))

    def drop(self, src: str, dst: str, kind: type, iid: tuple[str, int] = ("p1", 1)) -> None:
        self._take(src, dst, kind, iid)

    def committed(self, node: str) -> tuple[int, dict[str, int]] | None:
        inst = self.nodes[node].committed_instance("p1", 1)
        return None if inst is None else (inst.seq, dict(inst.deps))


def replay(rule: str) -> Trace:
    t = Trace(rule)
    t.propose("p3", b"c1")  # 1: p3.1, PreAccept to its fast quorum {p2, p3}
    t.drop("p3", "p1", PreAccept, ("p3", 1))
    t.drop("p3", "p2", PreAccept, ("p3", 1))  # (in the trace p2 never processes it either)
    t.propose("p1", b"c2")  # 2: p1.1, PreAccept to {p1, p3}
    t.drop("p1", "p2", PreAccept)
    t.deliver("p1", "p3", PreAccept)  # 3: p3 pre-accepts p1.1 after p3.1
    t.drop("p3", "p1", PreAcceptOK)  # (p1 never hears it)

    t.recover("p3", "p1", 1)  # 4: p3 prepares p1.1 with {p2, p3}
    t.drop("p3", "p1", Prepare)
    t.deliver("p3", "p2", Prepare)  # 5: p2 has not seen p1.1
    t.deliver("p2", "p3", PrepareOK)  # 6-7: not the owner's attributes: Phase 1 at ballot 1
    t.drop("p3", "p1", PreAccept)
    t.deliver("p3", "p2", PreAccept)
    t.deliver("p2", "p3", PreAcceptOK)  # p3 accepts at ballot 1 (depending on p3.1) ...
    t.drop("p3", "p1", Accept)
    t.drop("p3", "p2", Accept)  # ... and its Accept to p2 is lost

    t.recover("p2", "p1", 1)  # 8: p2 prepares p1.1 with {p1, p2}
    t.drop("p2", "p3", Prepare)
    t.deliver("p2", "p1", Prepare)  # 9-10: the owner answers: pre-accepted
    t.deliver("p1", "p2", PrepareOK)  # 11: Phase 1 again at ballot 2
    t.drop("p2", "p3", PreAccept)
    t.deliver("p2", "p1", PreAccept)  # 12: p1 pre-accepts (it never saw p3.1)
    t.deliver("p1", "p2", PreAcceptOK)  # 13: slow path: Accept at ballot 2
    t.drop("p2", "p3", Accept)
    t.deliver("p2", "p1", Accept)  # 14: p1 accepts at ballot 2 (no p3.1); its AcceptOK waits

    t.recover("p1", "p1", 1)  # 15: p1 prepares its own p1.1 with {p1, p3}, ballot 3
    t.drop("p1", "p2", Prepare)
    t.deliver("p1", "p3", Prepare)  # 16: p3 promises ballot 3 ...
    t.drop("p3", "p1", PrepareOK)  # ... and the answer is lost
    t.recover("p1", "p1", 1)  # 17: p1 tries again, ballot 4
    t.drop("p1", "p2", Prepare)
    t.deliver("p1", "p3", Prepare)  # 18
    t.deliver("p3", "p1", PrepareOK)  # 19-21: p1 decides from its own record and p3's
    t.drop("p1", "p2", Accept)
    t.deliver("p1", "p3", Accept)  # 22: p3 accepts at ballot 4
    t.deliver("p3", "p1", AcceptOK)  # p1 commits p1.1
    t.deliver("p1", "p2", AcceptOK)  # 23-24: p2 gets p1's AcceptOK of ballot 2 and commits
    return t


def test_the_original_single_ballot_rule_commits_one_instance_twice_differently() -> None:
    t = replay(ORIGINAL)
    p1, p2 = t.committed("p1"), t.committed("p2")
    assert p1 is not None
    assert p2 is not None
    # p1 took p3's ballot-1 attributes (they looked as new as its own) and so c2 follows
    # c1 there, while p2 committed p1's ballot-2 attributes, in which c2 does not follow c1
    # (an instance naming itself, as p1's does here, is no dependency)
    assert "p3" in p1[1]
    assert "p3" not in p2[1]
    assert p1 != p2  # agreement is broken: replicas will order c1 and c2 differently


def test_the_corrected_recovery_commits_what_was_accepted_at_the_highest_ballot() -> None:
    t = replay(CORRECTED)
    p1, p2 = t.committed("p1"), t.committed("p2")
    assert p1 is not None
    assert p2 is not None
    assert p1 == p2  # one value, the ballot-2 attributes p2 committed
    assert "p3" not in p1[1]
    # and p3, once told, commits the same
    t.deliver("p1", "p3", Commit)
    p3 = t.nodes["p3"].committed_instance("p1", 1)
    assert p3 is not None
    assert p3.status == COMMITTED
    assert (p3.seq, dict(p3.deps)) == p1


def finish(t: Trace) -> dict[str, dict[tuple[str, int], tuple[int, dict[str, int]]]]:
    """After the trace: every message still queued is delivered (oldest first, each at most
    once), p3 takes its own c1 over (its PreAccepts were lost), and the group runs until
    quiet. Returns each replica's committed (seq, deps) per instance."""
    for _ in range(2):
        for _ in range(1000):
            if not t.queue:
                break
            src, dst, msg = t.queue.pop(0)
            t._handle(dst, t.nodes[dst].on_message(0.0, src, msg))
        assert not t.queue, "the group did not go quiet"
        t.recover("p3", "p3", 1)
    out = {}
    for n in NAMES:
        insts = t.nodes[n].known_instances()
        out[n] = {i.iid: (i.seq, dict(i.deps)) for i in insts if i.status == COMMITTED}
        assert set(out[n]) == {("p1", 1), ("p3", 1)}, (n, out[n])
    return out


def test_played_to_the_end_the_original_rule_leaves_replicas_disagreeing_for_good() -> None:
    held = finish(replay(ORIGINAL))
    # p1 and p3 hold c2 after c1, p2 holds c2 independent of c1: no later message mends it
    assert held["p1"][("p1", 1)] == held["p3"][("p1", 1)]
    assert held["p2"][("p1", 1)] != held["p1"][("p1", 1)]


def test_played_to_the_end_ours_has_every_replica_commit_and_execute_the_same() -> None:
    t = replay(CORRECTED)
    held = finish(t)
    assert held["p1"] == held["p2"] == held["p3"]
    executed = {n: t.nodes[n].executor.count for n in NAMES}
    assert executed == {"p1": 2, "p2": 2, "p3": 2}
    values = set()
    for n in NAMES:
        sm = t.nodes[n].sm
        assert isinstance(sm, KVStore)
        values.add(sm.data.get("x"))
    assert len(values) == 1, values


@pytest.mark.parametrize("rule", [ORIGINAL, CORRECTED])
def test_what_a_replica_reports_after_accepting_at_one_ballot_and_promising_another(
    rule: str,
) -> None:
    """The difference itself (steps 16-18): p3 accepted at ballot 1, then promised ballot 3;
    asked again at ballot 4, the original rule reports ballot 3 (the promise) as the ballot of
    its attributes, ours reports ballot 1."""
    t = Trace(rule)
    cmd = Propose(encode(KVCommand(PUT, "x", b"c2")))
    t._handle("p1", t.nodes["p1"].on_request(0.0, "c", cmd))
    accept = next(m for _, d, m in t.queue if d == "p3" and isinstance(m, PreAccept))
    b1, b3, b4 = 1 << 8 | 2, 3 << 8, 4 << 8
    p3 = t.nodes["p3"]
    p3.on_message(0.0, "p1", Accept("p1", 1, b1, accept.cmd, accept.seq, accept.deps))
    p3.on_message(0.0, "p1", Prepare("p1", 1, b3))
    ready = p3.on_message(0.0, "p1", Prepare("p1", 1, b4))
    (_, reply), *_ = ready.messages
    assert isinstance(reply, PrepareOK)
    assert reply.vbal == (b3 if rule == ORIGINAL else b1)
