"""Raft tuning knobs (the state machine a group replicates is the interface's
:class:`~novacron_core.consensus.interface.StateMachine`)."""

from __future__ import annotations

from dataclasses import dataclass

from novacron_core.consensus.interface import GroupTuning, StateMachine


@dataclass(frozen=True, slots=True)
class RaftConfig:
    # A follower campaigns after a random timeout in [election_timeout, 2 * election_timeout).
    election_timeout: float = 1.0
    heartbeat_interval: float = 0.1
    pre_vote: bool = True
    # A leader steps down once a majority of voters (itself included) has not answered for
    # ``check_quorum_window`` (None: 2 x election_timeout, the longest randomized follower
    # timeout: by then the others can have elected a replacement; a shorter window lets one
    # stretch of event-loop lag at two followers depose a healthy leader).
    check_quorum: bool = True
    check_quorum_window: float | None = None
    # An input that comes more than ``lag_tolerance`` after this node's own deadline means
    # the process was not running (CPU starvation, a blocked loop): what the others sent
    # meanwhile may still wait unread, so for one election timeout it judges nobody by that
    # silence (see RaftNode._starved). For real-time drivers (the runtime sets one heartbeat
    # interval); None (off) where ticks always come on time or time jumps on purpose (the
    # simulator, scenario scripts).
    lag_tolerance: float | None = None
    # Campaign soon (PreVote first) when the runtime reports the leader's connection
    # refused or closed, instead of waiting out the election timeout: see on_peer_unreachable.
    leader_loss_campaign: bool = True
    # Flow control: appends in flight per follower, and bytes per append.
    max_inflight: int = 64
    max_append_bytes: int = 1 << 20
    # Take a snapshot (and compact the log) after this many applied entries.
    snapshot_entries: int = 10_000
    # Snapshots larger than one chunk travel in chunks of this size, at most
    # ``snapshot_window`` unacknowledged at a time per follower (flow control).
    snapshot_chunk_bytes: int = 1 << 20
    snapshot_window: int = 4
    # Bounded queues: proposals waiting for commit, and reads waiting for a ReadIndex round.
    max_pending: int = 10_000
    # "read_index" (always safe) or "lease" (relies on bounded clock drift; see docs/raft.md).
    read_mode: str = "read_index"
    # The lease is election_timeout * (1 - lease_drift) from the send time of the heartbeat.
    lease_drift: float = 0.2


def from_tuning(t: GroupTuning) -> RaftConfig:
    return RaftConfig(
        election_timeout=t.election_timeout,
        heartbeat_interval=t.heartbeat_interval,
        snapshot_entries=t.snapshot_entries,
        read_mode=t.read_mode,
        lag_tolerance=t.lag_tolerance,
    )


__all__ = ["RaftConfig", "StateMachine", "from_tuning"]
