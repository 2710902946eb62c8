"""What every part of the sync engine shares: the replica's state, and its journal.

:class:`~novacron_core.sync.engine.SyncNode` is assembled from one class per concern, each in
its own module and each building on the one before: :class:`EngineState` (this module: the
fields, declared once, and journaling), :class:`~novacron_core.sync.epochs.Epochs` (restart
epochs and their retirement), :class:`~novacron_core.sync.stability.Stability` (causal
stability and GC), :class:`~novacron_core.sync.antientropy.AntiEntropy` (Merkle repair and a
restarted replica's catch-up), :class:`~novacron_core.sync.gossip.GossipRounds` (push-pull
gossip) and ``SyncNode`` itself (the Machine interface, local updates, applying updates).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import msgpack

from novacron_core.clocks import HLC, CausalContext, Dot, VersionVector
from novacron_core.machine import NodeId, Ready
from novacron_core.observe.spans import Carriers, SpanMaker
from novacron_core.sync.messages import Update
from novacron_core.sync.peers import PeerSelector
from novacron_core.sync.persist import MemoryDurable
from novacron_core.sync.store import Store

if TYPE_CHECKING:
    from novacron_core.sync.engine import SyncConfig

ApplyHook = Callable[[NodeId, Update, float], None]
ConcurrentHook = Callable[[str, Update, VersionVector], None]


def split_replica(replica: str) -> tuple[str, int | None]:
    """``node~epoch`` -> (node, epoch); epoch None if the id has no epoch."""
    node, sep, epoch = replica.rpartition("~")
    if not sep or not epoch.isdigit():
        return replica, None
    return node, int(epoch)


def parse_floors(raw: Any) -> dict[str, int]:
    if not isinstance(raw, dict) or not all(
        type(k) is str and type(v) is int and v >= 0 for k, v in raw.items()
    ):
        raise ValueError("malformed retired epochs")
    return dict(raw)


class EngineState:
    """The fields (set by ``SyncNode.__init__``; see there what each holds)."""

    id: NodeId
    region: str
    config: SyncConfig
    durable: MemoryDurable
    rng: random.Random
    peers: dict[NodeId, str]
    selector: PeerSelector
    on_apply: ApplyHook | None
    on_concurrent: ConcurrentHook | None
    store: Store
    key_clocks: dict[str, VersionVector]
    concurrent_updates: int
    seen: CausalContext
    buffer: dict[Dot, tuple[Update, float]]
    _crdt_top: dict[Dot, tuple[str, int]]
    _settling: list[tuple[VersionVector, list[tuple[Dot, str, int]]]]
    key_stable: dict[str, VersionVector]
    stable: VersionVector
    safe: VersionVector
    epochs: dict[NodeId, int]
    reports: dict[NodeId, VersionVector]
    floors: dict[NodeId, int]
    peer_floors: dict[NodeId, dict[NodeId, int]]
    gc_keys: int
    known: dict[NodeId, VersionVector]
    inflight: dict[NodeId, dict[Dot, float]]
    last_heard: dict[NodeId, float]
    _pull_outstanding: float | None
    _rounds: int
    _journaled: int
    _seq: int
    _nonce: int
    epoch: int
    replica: str
    hlc: HLC
    _next_gossip: float
    _next_ae: float
    caught_up: bool
    refused: int
    _catchup: int
    _catchup_vv: dict[str, int] | None
    _catchup_floors: dict[str, int]
    _catchup_partial: bool
    _merged_from: set[NodeId]
    _retiring: list[tuple[str, Any]]
    _next_catchup: float
    awaiting: dict[int, set[str]]  # our update seq -> regions that acknowledged it
    spans: SpanMaker
    traces: Carriers  # traced updates' carriers (see ``SyncNode.__init__``)
    applying: bytes

    if TYPE_CHECKING:
        # defined by SyncNode, used by gossip below it
        def _apply(self, upd: Update, now: float, hook: bool = True) -> bool: ...

        def _apply_received(self, upd: Update, carrier: bytes, now: float) -> bool: ...

    def _snapshot(self) -> tuple[str, bytes]:
        blob = msgpack.packb(
            [self.store.snapshot(), self.seen.to_wire(), self.epoch, self.floors],
            use_bin_type=True,
        )
        self._journaled = 0
        return ("snap", blob)

    def _journal(self, ready: Ready, entry: tuple[str, Any]) -> None:
        ready.writes.append(entry)
        self._journaled += 1
        if self._journaled >= self.config.snapshot_every:
            ready.writes.append(self._snapshot())
