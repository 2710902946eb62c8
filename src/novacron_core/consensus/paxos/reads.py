"""Linearizable reads without a slot each: the leader's ReadIndex.

A read arriving at the leader notes the commit index and opens a round (``ctx``) that
rides on the next heartbeat. An acceptor acknowledges a heartbeat only while it has
promised nothing above the leader's ballot, so once a phase-2 quorum acknowledged the round
no other proposer can have chosen anything before the read arrived (its phase-1 quorum
would share an acceptor with ours, which would have refused us): the leader's state at the
noted index is current. Phase 2, not phase 1: it is the quorum every phase 1 meets.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class ReadRound:
    ctx: int
    index: int  # the leader's commit index when the round began
    waiters: list[tuple[Any, bytes]] = field(default_factory=list)


class Reads:
    __slots__ = ("ctx", "rounds", "waiting")

    def __init__(self) -> None:
        self.ctx = 0
        self.rounds: list[ReadRound] = []
        # Reads that came before the leader's barrier was chosen: its state may lack what
        # an earlier leader chose until then.
        self.waiting: list[tuple[Any, bytes]] = []

    def open(self, index: int) -> ReadRound:
        if len(self.rounds) > 256:
            self.rounds = [r for r in self.rounds if r.waiters]
        self.ctx += 1
        r = ReadRound(self.ctx, index)
        self.rounds.append(r)
        return r

    def confirm(self, confirmed: Callable[[int], bool]) -> list[ReadRound]:
        """Pop every round (oldest first) ``confirmed(ctx)`` says a quorum acknowledged."""
        done: list[ReadRound] = []
        while self.rounds and confirmed(self.rounds[0].ctx):
            done.append(self.rounds.pop(0))
        return done

    def drain(self) -> list[tuple[Any, bytes]]:
        out = list(self.waiting)
        for r in self.rounds:
            out.extend(r.waiters)
        self.rounds.clear()
        self.waiting.clear()
        return out

    def __len__(self) -> int:
        return len(self.waiting) + sum(len(r.waiters) for r in self.rounds)
