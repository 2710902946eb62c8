"""Sans-IO Raft: election (PreVote, CheckQuorum), pipelined replication, ReadIndex and lease
reads, snapshots, single-server membership changes with learners, leadership transfer.

``PROTOCOL`` is Raft as the node knows it (``consensus/interface.py``); everything else here
is for Raft's own code and tests."""

from novacron_core.consensus.raft.config import RaftConfig, StateMachine
from novacron_core.consensus.raft.log import RaftLog
from novacron_core.consensus.raft.messages import (
    BUSY,
    NOT_LEADER,
    OK,
    REJECTED,
    UNKNOWN,
    ChangeMember,
    ConfigState,
    Entry,
    MemberAddress,
    Propose,
    Read,
    Reply,
    SnapshotMeta,
    TransferLeader,
)
from novacron_core.consensus.raft.node import CANDIDATE, FOLLOWER, LEADER, PRE_CANDIDATE, RaftNode
from novacron_core.consensus.raft.protocol import PROTOCOL
from novacron_core.consensus.raft.storage import (
    AppendEntries,
    HardState,
    MemoryStorage,
    Recovered,
    SaveSnapshot,
    apply_write,
)

__all__ = [
    "BUSY",
    "CANDIDATE",
    "FOLLOWER",
    "LEADER",
    "NOT_LEADER",
    "OK",
    "PRE_CANDIDATE",
    "PROTOCOL",
    "REJECTED",
    "UNKNOWN",
    "AppendEntries",
    "ChangeMember",
    "ConfigState",
    "Entry",
    "HardState",
    "MemberAddress",
    "MemoryStorage",
    "Propose",
    "RaftConfig",
    "RaftLog",
    "RaftNode",
    "Read",
    "Recovered",
    "Reply",
    "SaveSnapshot",
    "SnapshotMeta",
    "StateMachine",
    "TransferLeader",
    "apply_write",
]
