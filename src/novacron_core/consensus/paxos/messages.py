"""Multi-Paxos wire records (codec type ids 400-429).

Every message between members carries the sender's ``epoch`` (how many membership changes
it has applied: each change ends one Paxos instance and starts the next, see
``membership.py``) and ``commit`` (the end of the chosen prefix it knows). A receiver behind
either asks the sender for what it lacks (``CatchUp``); one ahead tells the sender so
(``Nack``), so a lagging member catches up from whoever talks to it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from novacron_core.codec import record
from novacron_core.consensus.interface import COMMAND, ConfigState


@record(400)
@dataclass(frozen=True, slots=True, order=True)
class Ballot:
    """A proposal number: rounds order ballots, the proposer's id breaks ties, so no two
    proposers ever share one."""

    round: int = 0
    node: str = ""


ZERO = Ballot()


@record(401)
@dataclass(frozen=True, slots=True)
class Slot:
    """A value for log position ``index``: accepted in ``ballot`` (or chosen there, once the
    index is within its holder's commit). ``epoch``: the instance it belongs to."""

    index: int
    ballot: Ballot
    epoch: int
    kind: int = COMMAND
    data: bytes = b""

    @property
    def term(self) -> int:
        """(The interface's committed-entry ``term``: the round the value was chosen in.)"""
        return self.ballot.round


@record(402)
@dataclass(frozen=True, slots=True)
class SnapshotMeta:
    """The state machine after applying every slot up to ``index``: the instance it was in
    and its membership."""

    index: int = 0
    epoch: int = 0
    config: ConfigState = field(default_factory=ConfigState)


@record(410)
@dataclass(frozen=True, slots=True)
class Prepare:
    """Phase 1a for every slot after ``commit`` at once (Multi-Paxos: once per ballot).
    ``transfer``: asked for by the leader (TimeoutNow), so acceptors skip stickiness."""

    ballot: Ballot
    epoch: int
    commit: int
    transfer: bool = False


@record(411)
@dataclass(frozen=True, slots=True)
class Promise:
    """Phase 1b: the acceptor will accept nothing below ``ballot``; ``slots``: what it has
    accepted after ``max(prepare's commit, its own commit)`` in this epoch. Slots up to
    ``commit`` are chosen; the proposer learns them (CatchUp) before it leads."""

    ballot: Ballot
    epoch: int
    commit: int
    slots: list[Slot]


@record(412)
@dataclass(frozen=True, slots=True)
class Nack:
    """A Prepare, Accept or Heartbeat refused: ``promised`` is the ballot the acceptor is
    bound to (higher than the sender's, unless ``reason`` says otherwise)."""

    promised: Ballot
    epoch: int
    commit: int
    reason: str = ""


@record(413)
@dataclass(frozen=True, slots=True)
class Accept:
    """Phase 2a for one or more slots (pipelined: the leader does not wait for one slot
    before proposing the next). ``commit``: the leader's."""

    ballot: Ballot
    epoch: int
    slots: list[Slot]
    commit: int


@record(414)
@dataclass(frozen=True, slots=True)
class Accepted:
    """Phase 2b: ``indexes`` accepted in ``ballot`` (durably, before this was sent)."""

    ballot: Ballot
    epoch: int
    indexes: list[int]
    commit: int


@record(415)
@dataclass(frozen=True, slots=True)
class Heartbeat:
    """The leader is alive; ``ctx`` > 0 tags a read-confirmation round."""

    ballot: Ballot
    epoch: int
    commit: int
    ctx: int = 0


@record(416)
@dataclass(frozen=True, slots=True)
class HeartbeatAck:
    ballot: Ballot
    epoch: int
    commit: int
    ctx: int = 0


@record(417)
@dataclass(frozen=True, slots=True)
class CatchUp:
    """Send me the chosen slots after ``commit`` (any member that knows them answers)."""

    epoch: int
    commit: int


@record(418)
@dataclass(frozen=True, slots=True)
class Learn:
    """Chosen slots, contiguous from the asker's commit + 1; ``commit``: the sender's."""

    epoch: int
    slots: list[Slot]
    commit: int


@record(419)
@dataclass(frozen=True, slots=True)
class InstallSnapshot:
    """The chosen prefix up to ``meta.index`` as a state-machine snapshot (the slots were
    compacted away at the sender)."""

    meta: SnapshotMeta
    data: bytes
    commit: int


@record(420)
@dataclass(frozen=True, slots=True)
class TimeoutNow:
    """Leadership transfer: campaign now."""

    ballot: Ballot
    epoch: int


# Every record one member sends another, for a transport that decodes them.
PEER_MESSAGES = (
    Prepare,
    Promise,
    Nack,
    Accept,
    Accepted,
    Heartbeat,
    HeartbeatAck,
    CatchUp,
    Learn,
    InstallSnapshot,
    TimeoutNow,
)
