"""Explicit Prepare: what a replica that takes over an instance does with the answers.

The recovering replica sends Prepare(ballot) to every replica and, once a quorum (``F + 1``,
itself included) promised, decides from what they hold (the paper's Figure 3, with the
fast quorum of the simplified protocol, ``2F``):

1. someone holds it committed: commit that;
2. someone accepted it: Accept (Paxos phase 2) the attributes accepted at the highest
   ballot — the ballot at which they were accepted, *not* the ballot promised since;
3. the owner answered: it never fast-commits once it promised a higher ballot, and had it
   committed it would say so; run Phase 1 again with its command (slow path only);
4. at least ``F`` answers pre-accepted the owner's own attributes at ballot 0 (``eq``): the
   owner may have committed on the fast path (its fast quorum of ``2F`` meets any ``F + 1``
   non-owners in at least ``F``), and those attributes are safe to commit whether it did or
   not (a conflicting command committed without it would need a quorum of ``F + 1`` among
   the ``<= F`` replicas that did not vote for them); Accept them;
5. someone pre-accepted it: run Phase 1 again with the command (slow path only);
6. nobody has it: commit a no-op (through Accept).

**The correction.** Case 2 is Paxos's "value of the highest ballot" rule, and it needs each
replica to report the ballot at which it *accepted* what it reports. The paper's TLA+
specification and its Go implementation keep a single ballot per instance, overwritten by
every promise, so two accepted replies can look equally new (or the older one newer) and
recovery can commit a second, different value: Sutra, "On the correctness of Egalitarian
Paxos" (IPL 2020, arXiv:1906.10917), with a TLA+ counterexample. We keep the two ballots
apart (``bal`` promised, ``vbal`` accepted), as Paxos does and as Sutra's fix does.

``ORIGINAL`` reproduces the single-variable rule, for the counterexample test only: every
reply reports the ballot the replica held before this promise (the specification's
``prev_ballot``), and among equally new accepted replies a later one replaces an earlier one
(the specification's ``CHOOSE`` may pick either; this is the pick of the counterexample).

Case 4's ``F`` threshold with a ``2F`` fast quorum is why we do not use the optimised fast
quorum ``F + floor((F + 1) / 2)`` for ``N >= 5``: with it, recovery must first make sure no
conflicting command committed past the instance (the paper's TryPreAccept), the part of the
protocol later work found hardest to get right (Ryabinin, Gotsman, Sutra, "Making Democracy
Work", OPODIS 2025). For ``N = 3`` both fast quorums are 2.
"""

from __future__ import annotations

from dataclasses import dataclass

from novacron_core.consensus.epaxos.messages import (
    ACCEPTED,
    COMMITTED,
    NOOP_COMMAND,
    PREACCEPTED,
    Command,
    Deps,
    PrepareOK,
)

CORRECTED, ORIGINAL = "corrected", "original"
# What a decision says to do next.
COMMIT, ACCEPT, PREACCEPT = "commit", "accept", "preaccept"


@dataclass(frozen=True, slots=True)
class Decision:
    action: str
    cmd: Command
    seq: int = 0
    deps: Deps | None = None


def decide(owner: str, replies: list[tuple[str, PrepareOK]], f: int, rule: str) -> Decision:
    """``replies``: (sender, reply) in the order they arrived (the recoverer's own first)."""
    for _, r in replies:
        if r.status == COMMITTED and r.cmd is not None:
            return Decision(COMMIT, r.cmd, r.seq, dict(r.deps))
    best: PrepareOK | None = None
    for _, r in replies:
        if r.status != ACCEPTED or r.cmd is None:
            continue
        if best is None or r.vbal > best.vbal or (rule == ORIGINAL and r.vbal == best.vbal):
            best = r
    if best is not None:
        assert best.cmd is not None
        return Decision(ACCEPT, best.cmd, best.seq, dict(best.deps))
    pre = [(src, r) for src, r in replies if r.status == PREACCEPTED and r.cmd is not None]
    owner_answered = any(src == owner for src, _ in replies)
    if not owner_answered:
        votes = [r for _, r in pre if r.eq and r.vbal == 0]
        if votes and len(votes) >= f:
            v = votes[0]
            assert v.cmd is not None
            return Decision(ACCEPT, v.cmd, v.seq, dict(v.deps))
    if pre:
        cmd = pre[0][1].cmd
        assert cmd is not None
        return Decision(PREACCEPT, cmd)
    return Decision(ACCEPT, NOOP_COMMAND, 0, {})
