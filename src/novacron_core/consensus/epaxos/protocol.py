"""EPaxos as a :class:`~novacron_core.consensus.interface.ConsensusProtocol` (``PROTOCOL``)."""

from __future__ import annotations

import random
from typing import Any

from novacron_core.consensus.epaxos.config import from_tuning
from novacron_core.consensus.epaxos.messages import PEER_MESSAGES
from novacron_core.consensus.epaxos.replica import EPaxosReplica
from novacron_core.consensus.epaxos.storage import EPaxosLogFormat, MemoryStorage
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


class EPaxos:
    name = "epaxos"
    consistency = "linearizable"
    peer_messages: tuple[type, ...] = PEER_MESSAGES
    log_format: LogFormat = EPaxosLogFormat()

    def member(
        self,
        node_id: str,
        durable: GroupDurable,
        sm: StateMachine,
        rng: random.Random,
        tuning: GroupTuning,
        voters: tuple[str, ...] = (),
        addresses: tuple[MemberAddress, ...] = (),
    ) -> EPaxosReplica:
        if tuning.quorum.strip() != "majority":
            # (its fast and slow quorums are fixed by the replica count: 2F and F+1)
            raise UnsupportedSetting(
                f"quorum: epaxos uses its own fast (2F) and slow (F+1) quorums, not "
                f"{tuning.quorum!r}: leave --quorum at majority"
            )
        return EPaxosReplica(
            node_id, durable.load(), sm, rng, from_tuning(tuning), voters, addresses
        )

    def memory_durable(self) -> MemoryStorage:
        return MemoryStorage()

    def coalesce(self, messages: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
        """Nothing to merge: every message is about one instance (and the driver sends one
        batch's messages to a peer in one write anyway)."""
        return messages


PROTOCOL = EPaxos()


def _conforms(node: EPaxosReplica) -> tuple[ConsensusProtocol, GroupMember]:
    """(For mypy: EPaxos implements the interface structurally.)"""
    return PROTOCOL, node
