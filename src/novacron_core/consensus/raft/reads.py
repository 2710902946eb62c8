"""ReadIndex rounds and the leader lease (Raft dissertation §6.4).

Every heartbeat broadcast opens a round tagged with a growing ``ctx``; a follower's answer
echoes it. A round is confirmed once a quorum of voters has answered it or a later round:
then the leader knew it was still leader after the round began, so its commit index at that
moment is a safe read index. Confirmed heartbeat rounds also extend the lease.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class ReadRound:
    ctx: int
    index: int  # the leader's commit index when the round began
    sent_at: float
    waiters: list[tuple[Any, bytes]] = field(default_factory=list)


class ReadQueue:
    __slots__ = ("ctx", "lease_until", "rounds", "waiting")

    def __init__(self) -> None:
        self.ctx = 0
        self.rounds: list[ReadRound] = []
        # Reads that arrived before the leader committed an entry of its own term: its commit
        # index may lag the true one until then, so they cannot be given a read index yet.
        self.waiting: list[tuple[Any, bytes]] = []
        self.lease_until = float("-inf")

    def open(self, index: int, now: float) -> ReadRound:
        if len(self.rounds) > 256:
            # A leader cut off from its quorum (CheckQuorum disabled) opens a heartbeat round
            # every interval and confirms none: keep only the ones somebody waits for.
            self.rounds = [r for r in self.rounds if r.waiters]
        self.ctx += 1
        r = ReadRound(self.ctx, index, now)
        self.rounds.append(r)
        return r

    def confirm(self, acked: list[int], quorum: int, lease: float) -> list[ReadRound]:
        """Pop every round that ``acked`` (ctx per voter, self included) confirms."""
        done: list[ReadRound] = []
        while self.rounds:
            r = self.rounds[0]
            if sum(1 for c in acked if c >= r.ctx) < quorum:
                break
            done.append(self.rounds.pop(0))
            self.lease_until = max(self.lease_until, r.sent_at + lease)
        return done

    def drain(self) -> list[tuple[Any, bytes]]:
        """Everything still waiting (the leader is stepping down)."""
        out = list(self.waiting)
        for r in self.rounds:
            out.extend(r.waiters)
        self.rounds.clear()
        self.waiting.clear()
        self.lease_until = float("-inf")
        return out

    def __len__(self) -> int:
        return len(self.waiting) + sum(len(r.waiters) for r in self.rounds)
