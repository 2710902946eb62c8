"""EPaxos tuning knobs (derived from the protocol-neutral :class:`GroupTuning`)."""

from __future__ import annotations

from dataclasses import dataclass

from novacron_core.consensus.epaxos.recovery import CORRECTED, ORIGINAL
from novacron_core.consensus.interface import GroupTuning


@dataclass(frozen=True, slots=True)
class EPaxosConfig:
    # A replica that has waited this long (randomised to [T, 2T)) for an instance to commit
    # takes it over (Explicit Prepare); the group's election timeout plays this part.
    recover_after: float = 1.0
    # Beacons (executed watermarks, highest instances seen) go out this often; a replica
    # that heard nothing from a quorum for ``recover_after`` calls itself isolated.
    beacon_interval: float = 0.1
    # Ask the others for a commit this long after noticing it is missing here.
    fetch_after: float = 0.2
    # Unanswered PreAccept/Accept/Prepare messages are sent again this often.
    resend_interval: float = 0.2
    # The command leader waits this long for its fast quorum before it settles for a slow
    # quorum (only when a replica is silent: a conflicting reply decides at once).
    slow_path_after: float = 0.5
    # Take a snapshot (and compact what every replica executed) every this many executions.
    snapshot_entries: int = 10_000
    # Bounded queue: client commands proposed here and not yet executed.
    max_pending: int = 10_000
    # "corrected" (two ballots per instance) or "original" (the paper's single ballot, for
    # the counterexample test only; see recovery.py).
    recovery: str = CORRECTED

    def __post_init__(self) -> None:
        if self.recovery not in (CORRECTED, ORIGINAL):
            raise ValueError(
                f"recovery: {self.recovery!r} is neither {CORRECTED!r} nor {ORIGINAL!r}"
            )


def from_tuning(t: GroupTuning) -> EPaxosConfig:
    """The node's settings: ``election_timeout`` bounds recovery, ``heartbeat_interval`` the
    beacons and retransmissions. ``read_mode`` does not apply: reads are commands."""
    return EPaxosConfig(
        recover_after=t.election_timeout,
        beacon_interval=t.heartbeat_interval,
        fetch_after=2 * t.heartbeat_interval,
        resend_interval=max(2 * t.heartbeat_interval, t.election_timeout / 2),
        slow_path_after=t.election_timeout / 2,
        snapshot_entries=t.snapshot_entries,
    )
