"""Raft's wire records (type_ids 100-149).

Messages are the same objects in the simulator (passed as Python objects) and on the wire
(encoded with :mod:`novacron_core.codec`), so every field has a codec-friendly type. The
client-facing requests and replies, and the membership records, are the protocol-neutral
ones of :mod:`novacron_core.consensus.interface` (re-exported here for Raft's own code).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from novacron_core.codec import record
from novacron_core.consensus.interface import (
    BARRIER,
    BUSY,
    COMMAND,
    NOT_LEADER,
    OK,
    REJECTED,
    UNKNOWN,
    ChangeMember,
    ConfigState,
    MemberAddress,
    Propose,
    Read,
    Reply,
    TransferLeader,
)
from novacron_core.consensus.interface import CONFIG as CONFIG

# Entry kinds: the interface's committed-entry kinds (a NOOP is a new leader's barrier).
NORMAL, NOOP = COMMAND, BARRIER

__all__ = [
    "BUSY",
    "CONFIG",
    "NOOP",
    "NORMAL",
    "NOT_LEADER",
    "OK",
    "PEER_MESSAGES",
    "REJECTED",
    "UNKNOWN",
    "Append",
    "AppendResp",
    "ChangeMember",
    "ConfigState",
    "Entry",
    "InstallSnapshot",
    "MemberAddress",
    "Propose",
    "Read",
    "Reply",
    "SnapshotChunk",
    "SnapshotChunkResp",
    "SnapshotMeta",
    "TimeoutNow",
    "TransferLeader",
    "Vote",
    "VoteResp",
]


@record(100)
@dataclass(frozen=True, slots=True)
class Entry:
    term: int
    index: int
    kind: int = NORMAL
    data: bytes = b""


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
