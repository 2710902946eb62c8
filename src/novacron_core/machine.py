"""The one interface every sans-IO protocol implements, and what it hands back.

A protocol state machine never opens a socket, sleeps, reads the wall clock or spawns a
task. The driver (``runtime/`` for asyncio, ``sim/`` for the deterministic simulator) feeds
it inputs and carries out the :class:`Ready` it returns, in this order (etcd-io/raft's
``Ready`` is the model):

1. append ``writes`` to durable storage; if ``sync`` is true, fsync before step 2
   (a message may promise something only the disk can keep, e.g. a Raft vote);
2. send ``messages``;
3. deliver ``replies`` to the clients that asked;
4. arm a wake-up for ``wake_at`` (the earliest virtual/monotonic time, in seconds, at which
   the machine wants :meth:`Machine.on_tick`; ``None`` = no timer needed).

Two more fields are for whoever *owns* the machine rather than for the driver (etcd-io/raft's
``CommittedEntries`` and ``SoftState``): ``committed``, what the machine committed and
applied since its last Ready, in order, and ``soft_state``, set when volatile facts its owner
reacts to changed (for a consensus member: role, leader, term, membership; see
:mod:`novacron_core.consensus.interface`). A composite machine reads them from the Readys
of the machines it is made of; a driver may look at them (to log a new leader, to re-dial
changed members) and otherwise ignores them.

``writes`` are opaque to the driver: each protocol supplies a :class:`Durable` that knows how
to apply them and how to hand its contents back to a restarting machine. This is what lets the
simulator crash a node and restart it with exactly what it had persisted, losing unsynced
writes when a fault schedule says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

NodeId = str


@dataclass(slots=True)
class Ready:
    """What a state machine asks its driver to do after one input."""

    messages: list[tuple[NodeId, Any]] = field(default_factory=list)
    writes: list[Any] = field(default_factory=list)
    sync: bool = False
    replies: list[tuple[Any, Any]] = field(default_factory=list)
    wake_at: float | None = None
    committed: list[Any] = field(default_factory=list)
    soft_state: Any = None

    def send(self, dst: NodeId, msg: Any) -> None:
        self.messages.append((dst, msg))

    def reply(self, request_id: Any, result: Any) -> None:
        self.replies.append((request_id, result))

    def wake(self, at: float) -> None:
        """Ask for a tick no later than ``at`` (keeps the earliest of several asks)."""
        if self.wake_at is None or at < self.wake_at:
            self.wake_at = at

    def extend(self, other: Ready) -> None:
        """Fold ``other`` (a later Ready) into this one: writes and committed entries keep
        their order, sync is sticky, the later soft state wins."""
        self.messages.extend(other.messages)
        self.writes.extend(other.writes)
        self.sync = self.sync or other.sync
        self.replies.extend(other.replies)
        if other.wake_at is not None:
            self.wake(other.wake_at)
        if other.committed:
            self.committed.extend(other.committed)
        if other.soft_state is not None:
            self.soft_state = other.soft_state


class Machine(Protocol):
    """A sans-IO protocol participant. ``now`` is seconds on the driver's clock."""

    def on_start(self, now: float) -> Ready: ...

    def on_message(self, now: float, src: NodeId, msg: Any) -> Ready: ...

    def on_tick(self, now: float) -> Ready: ...

    def on_request(self, now: float, request_id: Any, request: Any) -> Ready: ...


class Durable(Protocol):
    """A protocol's durable state as the disk holds it (after fsync)."""

    def apply(self, writes: list[Any]) -> None: ...
