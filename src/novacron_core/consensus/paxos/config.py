"""Multi-Paxos tuning knobs."""

from __future__ import annotations

from dataclasses import dataclass

from novacron_core.consensus.interface import GroupTuning
from novacron_core.consensus.quorum import MAJORITY, QuorumStrategy, parse_strategy


@dataclass(frozen=True, slots=True)
class PaxosConfig:
    # A follower that hears no leader for a random time in [T, 2T) runs phase 1.
    election_timeout: float = 1.0
    heartbeat_interval: float = 0.1
    # Campaign soon when the runtime reports the leader's connection refused or closed.
    leader_loss_campaign: bool = True
    # Take a snapshot (and forget the slots it covers) after this many applied slots.
    snapshot_entries: int = 10_000
    # Bounded queues: slots proposed but not yet chosen, and reads waiting to be confirmed.
    max_pending: int = 10_000
    # Bytes of slots per catch-up or retransmission message.
    max_batch_bytes: int = 1 << 20
    # Which voter sets decide each phase (FPaxos: any with |Q1| + |Q2| > N).
    quorum: QuorumStrategy = MAJORITY


def from_tuning(t: GroupTuning) -> PaxosConfig:
    """Raises :class:`~novacron_core.consensus.quorum.QuorumError` for a bad quorum."""
    return PaxosConfig(
        election_timeout=t.election_timeout,
        heartbeat_interval=t.heartbeat_interval,
        snapshot_entries=t.snapshot_entries,
        quorum=parse_strategy(t.quorum),
    )
