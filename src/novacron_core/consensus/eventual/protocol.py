"""The eventual protocol as a :class:`~novacron_core.consensus.interface.ConsensusProtocol`
(``PROTOCOL``)."""

from __future__ import annotations

import random
from typing import Any

from novacron_core.consensus.eventual.messages import PEER_MESSAGES
from novacron_core.consensus.eventual.node import PROTOCOL_NAME, EventualMember
from novacron_core.consensus.eventual.storage import EventualDurable, EventualLogFormat
from novacron_core.consensus.interface import (
    ConsensusProtocol,
    GroupDurable,
    GroupMember,
    GroupTuning,
    KeyedState,
    LogFormat,
    MemberAddress,
    StateMachine,
    UnsupportedSetting,
)


class Eventual:
    name = PROTOCOL_NAME
    consistency = "eventual"
    peer_messages: tuple[type, ...] = PEER_MESSAGES
    log_format: LogFormat = EventualLogFormat()

    def member(
        self,
        node_id: str,
        durable: GroupDurable,
        sm: StateMachine,
        rng: random.Random,
        tuning: GroupTuning,
        voters: tuple[str, ...] = (),
        addresses: tuple[MemberAddress, ...] = (),
    ) -> EventualMember:
        if tuning.quorum.strip() != "majority":
            raise UnsupportedSetting(
                f"quorum: eventual has no quorums (each replica answers alone), not "
                f"{tuning.quorum!r}"
            )
        if not isinstance(sm, KeyedState):
            raise UnsupportedSetting("eventual replicates state key by key: a keyed state machine")
        loaded = durable.load()
        assert isinstance(loaded, EventualDurable)
        return EventualMember(node_id, loaded, sm, rng, tuning, voters, addresses)

    def memory_durable(self) -> EventualDurable:
        return EventualDurable()

    def coalesce(self, messages: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
        return messages


PROTOCOL = Eventual()


def _conforms(member: EventualMember) -> tuple[ConsensusProtocol, GroupMember]:
    """(For mypy: the eventual protocol implements the interface structurally.)"""
    return PROTOCOL, member
