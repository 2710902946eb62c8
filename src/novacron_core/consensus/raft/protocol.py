"""Raft as a :class:`~novacron_core.consensus.interface.ConsensusProtocol` (``PROTOCOL``)."""

from __future__ import annotations

import random
from typing import Any

from novacron_core.consensus.interface import (
    ConsensusProtocol,
    GroupDurable,
    GroupMember,
    GroupTuning,
    LogFormat,
    MemberAddress,
    StateMachine,
    UnsupportedSetting,
)
from novacron_core.consensus.raft.coalesce import coalesce
from novacron_core.consensus.raft.config import from_tuning
from novacron_core.consensus.raft.messages import PEER_MESSAGES
from novacron_core.consensus.raft.node import RaftNode
from novacron_core.consensus.raft.storage import MemoryStorage, RaftLogFormat


class Raft:
    name = "raft"
    consistency = "linearizable"
    peer_messages: tuple[type, ...] = PEER_MESSAGES
    log_format: LogFormat = RaftLogFormat()

    def member(
        self,
        node_id: str,
        durable: GroupDurable,
        sm: StateMachine,
        rng: random.Random,
        tuning: GroupTuning,
        voters: tuple[str, ...] = (),
        addresses: tuple[MemberAddress, ...] = (),
    ) -> RaftNode:
        if tuning.quorum.strip() != "majority":
            raise UnsupportedSetting(
                f"quorum: raft decides by majorities only, not {tuning.quorum!r} "
                "(flexible, weighted, grid and hierarchical quorums are for multi-paxos)"
            )
        return RaftNode(node_id, durable.load(), sm, rng, from_tuning(tuning), voters, addresses)

    def memory_durable(self) -> MemoryStorage:
        return MemoryStorage()

    def coalesce(self, messages: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
        return coalesce(messages)


PROTOCOL = Raft()


def _conforms(node: RaftNode) -> tuple[ConsensusProtocol, GroupMember]:
    """(For mypy: Raft implements the interface structurally.)"""
    return PROTOCOL, node
