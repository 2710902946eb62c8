"""Raft's wire records (type_ids 100-149) and client-facing requests/replies (150-199).

Messages are the same objects in the simulator (passed as Python objects) and on the wire
(encoded with :mod:`novacron_core.codec`), so every field has a codec-friendly type.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from novacron_core.codec import record

NORMAL, CONFIG, NOOP = 0, 1, 2


@record(100)
@dataclass(frozen=True, slots=True)
class Entry:
    term: int
    index: int
    kind: int = NORMAL
    data: bytes = b""


@record(103)
@dataclass(frozen=True, slots=True)
class MemberAddress:
    """Where a member listens: ``host:port`` strings, opaque to Raft (the runtime dials them)."""

    node: str
    peer: str
    http: str


@record(101)
@dataclass(frozen=True, slots=True)
class ConfigState:
    """Voters decide; learners only receive the log (new members catch up as learners).

    ``addresses`` (sorted by node, members only) travel with the membership, in the config
    entry and in every snapshot, so each member — also one restored from a snapshot or fed
    by InstallSnapshot — learns where the others listen without a restart or a static list.
    """

    voters: tuple[str, ...] = ()
    learners: tuple[str, ...] = ()
    addresses: tuple[MemberAddress, ...] = ()

    def members(self) -> tuple[str, ...]:
        return self.voters + self.learners

    def address(self, node: str) -> MemberAddress | None:
        for a in self.addresses:
            if a.node == node:
                return a
        return None


@record(102)
@dataclass(frozen=True, slots=True)
class SnapshotMeta:
    index: int = 0
    term: int = 0
    config: ConfigState = field(default_factory=ConfigState)


@record(110)
@dataclass(frozen=True, slots=True)
class Vote:
    """RequestVote. ``pre``: a PreVote probe at ``term`` = candidate's term + 1 that changes
    nobody's state. ``transfer``: sent on TimeoutNow, so voters skip leader stickiness."""

    term: int
    last_index: int
    last_term: int
    pre: bool = False
    transfer: bool = False


@record(111)
@dataclass(frozen=True, slots=True)
class VoteResp:
    term: int
    granted: bool
    pre: bool = False


@record(112)
@dataclass(frozen=True, slots=True)
class Append:
    """AppendEntries; an empty one is a heartbeat. ``ctx`` > 0 tags a ReadIndex round."""

    term: int
    prev_index: int
    prev_term: int
    entries: list[Entry]
    commit: int
    ctx: int = 0


@record(113)
@dataclass(frozen=True, slots=True)
class AppendResp:
    """``match``: highest index known to match the leader's log (on success).
    On reject, ``hint_index``/``hint_term`` let the leader skip a whole term at a time."""

    term: int
    success: bool
    match: int = 0
    hint_index: int = 0
    hint_term: int = 0
    ctx: int = 0


@record(114)
@dataclass(frozen=True, slots=True)
class InstallSnapshot:
    term: int
    meta: SnapshotMeta
    data: bytes
    commit: int = 0


@record(115)
@dataclass(frozen=True, slots=True)
class TimeoutNow:
    term: int


@record(116)
@dataclass(frozen=True, slots=True)
class SnapshotChunk:
    """Bytes ``[offset, offset + len(data))`` of the snapshot ``meta`` describes, for a
    snapshot larger than one message (smaller ones go whole in :class:`InstallSnapshot`);
    ``done`` on the last piece. The follower assembles the pieces in order and installs the
    whole; a separate type, so a node that predates chunking refuses it rather than
    restoring a fragment."""

    term: int
    meta: SnapshotMeta
    offset: int
    data: bytes
    done: bool
    commit: int = 0


@record(117)
@dataclass(frozen=True, slots=True)
class SnapshotChunkResp:
    """The follower holds the first ``received`` bytes of snapshot (``index``, ``snap_term``):
    the leader goes on from there, also after a timeout or under a new leader (resuming).
    ``ok`` False: the piece did not continue them (one was lost): resend from ``received``."""

    term: int
    index: int
    snap_term: int
    received: int
    ok: bool = True


# ------------------------------------------------------------------ client side


@record(150)
@dataclass(frozen=True, slots=True)
class Propose:
    data: bytes


@record(151)
@dataclass(frozen=True, slots=True)
class Read:
    """A linearizable read: served after a ReadIndex round (or under a valid lease)."""

    query: bytes


@record(152)
@dataclass(frozen=True, slots=True)
class ChangeMember:
    """``action``: "add_learner", "promote" (learner -> voter), "add_voter" or "remove".

    ``peer``/``http``: the node's addresses (``host:port``), recorded in the configuration by
    add_learner/add_voter (replacing a known one); empty keeps what the config already has.
    Ignored by promote and remove (remove forgets the node's address)."""

    action: str
    node: str
    peer: str = ""
    http: str = ""


@record(153)
@dataclass(frozen=True, slots=True)
class TransferLeader:
    target: str


OK, NOT_LEADER, UNKNOWN, BUSY, REJECTED = "ok", "not_leader", "unknown", "busy", "rejected"


@record(160)
@dataclass(frozen=True, slots=True)
class Reply:
    """``status``: ok | not_leader (certainly not applied; retry at ``leader``) | unknown
    (may or may not apply: retry with the same session seq) | busy | rejected."""

    status: str
    value: bytes | None = None
    leader: str | None = None
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.status == OK


# Every record one Raft peer sends another, for a transport that decodes them: kept beside
# their definitions so a new message type is added in one place.
PEER_MESSAGES = (
    Vote,
    VoteResp,
    Append,
    AppendResp,
    InstallSnapshot,
    SnapshotChunk,
    SnapshotChunkResp,
    TimeoutNow,
)
