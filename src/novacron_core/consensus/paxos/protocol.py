"""Multi-Paxos as a :class:`~novacron_core.consensus.interface.ConsensusProtocol`
(``PROTOCOL``)."""

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
from novacron_core.consensus.paxos.coalesce import coalesce
from novacron_core.consensus.paxos.config import from_tuning
from novacron_core.consensus.paxos.messages import PEER_MESSAGES
from novacron_core.consensus.paxos.node import PROTOCOL_NAME, PaxosNode
from novacron_core.consensus.paxos.storage import MemoryStorage, PaxosLogFormat
from novacron_core.consensus.quorum import QuorumError


class MultiPaxos:
    name = PROTOCOL_NAME
    consistency = "linearizable"
    peer_messages: tuple[type, ...] = PEER_MESSAGES
    log_format: LogFormat = PaxosLogFormat()

    def member(
        self,
        node_id: str,
        durable: GroupDurable,
        sm: StateMachine,
        rng: random.Random,
        tuning: GroupTuning,
        voters: tuple[str, ...] = (),
        addresses: tuple[MemberAddress, ...] = (),
    ) -> PaxosNode:
        try:
            cfg = from_tuning(tuning)
            if voters:
                cfg.quorum(voters)
        except QuorumError as e:
            raise UnsupportedSetting(f"quorum: {e}") from None
        return PaxosNode(node_id, durable.load(), sm, rng, cfg, voters, addresses)

    def memory_durable(self) -> MemoryStorage:
        return MemoryStorage()

    def coalesce(self, messages: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
        return coalesce(messages)


PROTOCOL = MultiPaxos()


def _conforms(node: PaxosNode) -> tuple[ConsensusProtocol, GroupMember]:
    """(For mypy: Multi-Paxos implements the interface structurally.)"""
    return PROTOCOL, node
