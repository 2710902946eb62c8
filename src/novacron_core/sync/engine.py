"""The sync engine: one sans-IO machine per node that owns a store and replicates it.

* Local updates (``Mutate`` requests) change the store and become :class:`Update` records,
  each with a dot ``(replica, seq)``. The node's version vector over those dots is its vector
  clock; it travels with every gossip message, across regions included.
* Gossip (every ``interval``): push-pull with ``fanout`` peers picked region-aware. A push
  carries the buffered updates the peer lacks as far as we know (its last reported vector,
  minus what is already in flight to it); the peer answers with what *we* lack by the vector
  we sent. ``pull`` mode only sends vectors and gets exactly the missing updates back; with
  one pull outstanding at a time nothing is ever delivered twice (the byte-lean setting).
* Anti-entropy (every ``ae_interval``): Merkle comparison of key ranges with one peer, then
  full states of the keys in differing leaves only. It repairs what gossip cannot: updates
  evicted from every buffer, replicas restarted from an old snapshot.
* Durability: every update and repaired state is journaled (``fsync`` per update if
  ``sync_writes``); the journal is folded into a snapshot every ``snapshot_every`` entries.
  Each start bumps an epoch that is part of the replica id, so a node that lost unsynced
  writes in a crash never reuses a dot.
* Causal stability (every ``gc_every`` rounds): the meet of every peer's last vector and ours.
  Stable updates leave the buffers, and each key they touched is garbage-collected in its own
  CRDT dot space (see :meth:`SyncNode._collect`). A silent peer holds the stable point back.

The parts live in their own modules (``engine_state``, ``epochs``, ``stability``,
``antientropy``, ``gossip``); :class:`SyncNode` here is the Machine interface, local updates
and applying updates.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import msgpack

from novacron_core.clocks import HLC, CausalContext, Dot, VersionVector
from novacron_core.machine import NodeId, Ready
from novacron_core.observe.spans import NO_SPANS, Carriers, SpanMaker
from novacron_core.sync.crdt import LWWRegister, MVRegister, ORMap
from novacron_core.sync.crdt.base import Crdt, decode_crdt, encode_crdt
from novacron_core.sync.engine_state import ApplyHook, ConcurrentHook
from novacron_core.sync.gossip import GossipRounds
from novacron_core.sync.messages import (
    AeLeaves,
    AeRanges,
    AeStates,
    Gossip,
    Push,
    PushAck,
    Update,
)
from novacron_core.sync.peers import PeerSelector
from novacron_core.sync.persist import MemoryDurable
from novacron_core.sync.store import Store


@dataclass(frozen=True)
class SyncConfig:
    interval: float = 0.05  # gossip period, seconds (memberlist: 0.2 LAN / 0.5 WAN)
    fanout: int = 3
    cross_region: int = 1  # peers per round from other regions (when there are any)
    pull: bool = False  # True: send vectors only, receive exactly what is missing
    one_pull_at_a_time: bool = True  # pull mode: wait for the reply (or pull_timeout)
    pull_timeout: float = 1.0
    retry_after: float = 0.6  # resend an unacknowledged update to a peer after this long
    idle_every: int = 5  # with nothing to push, still exchange vectors every N rounds
    ae_interval: float = 2.0
    snapshot_every: int = 50_000
    sync_writes: bool = False
    max_batch: int = 5_000  # updates per gossip message
    # send each update's per-key vector clock for keys whose type can conflict (registers,
    # maps); counters and sets merge without conflicts and skip the bytes
    causal_deps: bool = True
    # garbage-collect metadata once causally stable (every replica has applied it): the
    # forwarding buffer always; with ``gc`` also the CRDTs' stable dots and context clouds
    gc: bool = True
    gc_every: int = 20  # gossip rounds between stability computations
    # push each local update at once to every peer of our region and one peer of each other
    # region, which relays it to its region; the rounds then only repair (see ``Push``)
    eager: bool = False


@dataclass(frozen=True)
class Mutate:
    """Client request: ``mutate(value)`` on ``key`` (created as ``kind``); replies the dot.
    ``ack``: pushed eagerly asking every receiver to acknowledge it (synchronous
    replication; see ``SyncNode.acknowledged_by``)."""

    key: str
    kind: type[Crdt]
    mutate: Callable[[Any], Crdt]
    ack: bool = False
    trace: bytes = b""  # the trace carrier of the work that made it (``observe.spans``)


@dataclass(frozen=True)
class Read:
    key: str


class CatchingUp(RuntimeError):
    """A mutation refused by a restarted replica that has not caught up with a peer yet
    (only for types whose GC drops dots, see ``Crdt.COLLAPSES``); nothing was changed."""

    def __init__(self, key: str) -> None:
        super().__init__(
            f"{key!r}: this replica restarted and is catching up with its peers; "
            "nothing was changed, retry shortly"
        )


CONFLICTING: tuple[type[Crdt], ...] = (LWWRegister, MVRegister, ORMap)


class SyncNode(GossipRounds):
    def __init__(
        self,
        node_id: NodeId,
        region: str,
        peers: Mapping[NodeId, str],
        durable: MemoryDurable,
        config: SyncConfig | None = None,
        seed: int = 0,
        on_apply: ApplyHook | None = None,
        on_concurrent: ConcurrentHook | None = None,
        spans: SpanMaker = NO_SPANS,
    ) -> None:
        self.id = node_id
        # traced updates: dot -> the carrier that travels with the update (the span that
        # made or applied it here); ``applying`` is the carrier of the update being applied
        # now, for whatever its application triggers (the store's subscribers)
        self.spans = spans
        self.traces = Carriers()
        self.applying = b""
        self.region = region
        self.config = config or SyncConfig()
        self.durable = durable
        self.rng = random.Random(seed)
        self.peers = {p: r for p, r in peers.items() if p != node_id}
        self.selector = PeerSelector(region, self.peers, self.rng, self.config.cross_region)
        self.on_apply = on_apply
        self.on_concurrent = on_concurrent
        self.key_clocks: dict[str, VersionVector] = {}  # key -> highest seq per origin seen
        self.concurrent_updates = 0
        self.seen = CausalContext()  # dots of every update applied here
        self.buffer: dict[Dot, tuple[Update, float]] = {}  # for forwarding; value: arrival
        # buffered update -> (key, highest CRDT-level counter of its origin in its delta)
        self._crdt_top: dict[Dot, tuple[str, int]] = {}
        # key -> CRDT-level dots (the key's own dot space) every replica has seen
        self.key_stable: dict[str, VersionVector] = {}
        # safe mappings of SETTLES keys, waiting for the vectors of their round to be safe
        self._settling: list[tuple[VersionVector, list[tuple[Dot, str, int]]]] = []
        self.stable = VersionVector()  # update dots every replica (this one too) has applied
        # update dots every replica reported stable (and so has applied *and* knows that all
        # others have): what the CRDTs may be garbage-collected with (see ``_collect``)
        self.safe = VersionVector()
        self.epochs: dict[NodeId, int] = {}  # peer -> highest restart epoch heard from it
        self.reports: dict[NodeId, VersionVector] = {}  # peer -> its stability report
        # node -> every epoch of it up to this one is retired here (see ``_retire``), and
        # what each peer told us of its own floors
        self.floors: dict[NodeId, int] = {}
        self.peer_floors: dict[NodeId, dict[NodeId, int]] = {}
        self.gc_keys = 0  # keys garbage-collected so far (a figure for tests and metrics)
        self.known: dict[NodeId, VersionVector] = {p: VersionVector() for p in self.peers}
        self.inflight: dict[NodeId, dict[Dot, float]] = {p: {} for p in self.peers}
        self.last_heard: dict[NodeId, float] = {}
        self._pull_outstanding: float | None = None
        self._rounds = 0
        self._journaled = 0
        self._seq = 0
        # a restart's epoch carries 16 random bits below the restart count, so that a node
        # whose disk went back in time (and so counts again from an older epoch) still never
        # reuses a replica id; epochs order incarnations by restart count
        self._nonce = random.Random(seed ^ 0x5EED).getrandbits(16)
        self.epoch = self._successor(self._restore())
        self.replica = f"{node_id}~{self.epoch}"
        self.store.replica = self.replica
        self.hlc = HLC(self.replica, max_drift_ms=10**12)
        self._next_gossip = 0.0
        self._next_ae = 0.0
        # a restarted replica may hold less than its previous incarnation acknowledged; until
        # it merged a caught-up peer's state it refuses mutations of types whose GC drops
        # stable dots (see ``_catchup_start``); a first start has nothing to catch up on
        self.caught_up = self.epoch == 1 or not self.peers
        self.refused = 0  # mutations refused while catching up
        self._catchup = 0  # current catch-up attempt
        self._catchup_vv: dict[str, int] | None = None  # the peer's vector of that attempt
        self._catchup_floors: dict[str, int] = {}  # and its retired epochs
        self._catchup_partial = False  # and whether it was catching up itself
        self._merged_from: set[NodeId] = set()  # peers whose whole state we merged
        self._retiring: list[tuple[str, Any]] = []  # journal entries ``_collect`` produced
        self._next_catchup = 0.0
        self.awaiting: dict[int, set[str]] = {}

    def _restore(self) -> int:
        self.store = Store(self.id)
        epoch = 0
        d = self.durable
        if d.snapshot is not None:
            store_blob, seen, epoch, *rest = msgpack.unpackb(d.snapshot, raw=False)
            self.store.restore(store_blob)
            self.seen = CausalContext.from_wire(seen)
            if rest:
                self.floors = dict(rest[0])
        for kind, body in d.journal:
            if kind == "epoch":
                epoch = max(epoch, body)
            elif kind == "u":
                self._apply(body, 0.0, hook=False)
            elif kind == "s":
                self.store.merge(body[0], decode_crdt(body[1]))
            elif kind == "seen":
                self.seen.merge(CausalContext(VersionVector(body)))
            elif kind == "floors":
                self._raise_floors(body)
        self._forget_retired()
        return int(epoch)

    def on_start(self, now: float) -> Ready:
        ready = Ready(writes=[("epoch", self.epoch)], sync=True)
        # desynchronise rounds across nodes so that they do not all gossip at once
        self._next_gossip = now + self.rng.random() * self.config.interval
        self._next_ae = now + self.config.ae_interval * (1 + self.rng.random())
        if not self.caught_up:
            self._catchup_start(now, ready)
        ready.wake(self._next_wake())
        return ready

    def _next_wake(self) -> float:
        wake = min(self._next_gossip, self._next_ae)
        return wake if self.caught_up else min(wake, self._next_catchup)

    def on_request(self, now: float, request_id: Any, request: Any) -> Ready:
        ready = Ready()
        if isinstance(request, Read):
            ready.reply(request_id, self.store.value(request.key))
        elif isinstance(request, Mutate):
            if not self.caught_up and request.kind.COLLAPSES:
                self.refused += 1
                ready.reply(request_id, CatchingUp(request.key))
                return ready
            ready.reply(request_id, self.update(now, request, ready))
            ready.sync = self.config.sync_writes
        else:
            ready.reply(request_id, ValueError(f"unknown request {request!r}"))
        return ready

    def reconfigure(self, now: float, peers: Mapping[NodeId, str], config: SyncConfig) -> Ready:
        """New peers (id -> region) or settings, at run time (a changed federation file).
        A removed peer no longer holds back stability; an added one starts unknown (updates
        still buffered reach it by gossip, older ones by anti-entropy)."""
        ready = Ready()
        self.config = config
        new = {p: r for p, r in peers.items() if p != self.id}
        for p in set(self.peers) - set(new):
            for table in (self.known, self.inflight, self.reports, self.peer_floors):
                table.pop(p, None)
            self.last_heard.pop(p, None)
        for p in set(new) - set(self.peers):
            self.known[p] = VersionVector()
            self.inflight[p] = {}
        if new != self.peers:
            self.peers = new
            self.selector = PeerSelector(self.region, new, self.rng, config.cross_region)
        self._next_gossip = min(self._next_gossip, now + config.interval)
        self._next_ae = min(self._next_ae, now + config.ae_interval)
        ready.wake(self._next_wake())
        return ready

    def update(self, now: float, m: Mutate, ready: Ready) -> Dot:
        delta = self.store.update(m.key, m.kind, m.mutate)
        self._seq += 1
        ts = self.hlc.now(int(now * 1000))
        clock = self.key_clocks.setdefault(m.key, VersionVector())
        clock.counters[self.replica] = self._seq
        deps = dict(clock.counters) if self.config.causal_deps and m.kind in CONFLICTING else {}
        upd = Update(self.replica, self._seq, m.key, encode_crdt(delta), ts.wall_ms, deps)
        dot = Dot(self.replica, self._seq)
        self.traces.put(dot, m.trace)
        self.seen.add(dot)
        self.buffer[dot] = (upd, now)
        self._note_crdt_top(dot, m.key, delta)
        self._journal(ready, ("u", upd))
        if self.on_apply is not None:
            self.on_apply(self.id, upd, now)
        if m.ack:
            self.awaiting[self._seq] = set()
        if self.config.eager or m.ack:
            self._push(now, upd, ready, ack=m.ack)
        return dot

    def on_tick(self, now: float) -> Ready:
        ready = Ready()
        cfg = self.config
        if now >= self._next_gossip:
            self._rounds += 1
            self._gossip_round(now, ready)
            self._next_gossip = max(self._next_gossip + cfg.interval, now)
            if self._rounds % cfg.gc_every == 0:
                self._collect()
                for entry in self._retiring:
                    self._journal(ready, entry)
                self._retiring.clear()
            elif self._rounds % max(1, cfg.gc_every // 4) == 0:
                self._stability()  # fresher reports: peers' ``safe`` lags less
        if now >= self._next_ae:
            if self.caught_up:  # (catching up is an anti-entropy exchange of its own)
                self._anti_entropy(ready)
            self._next_ae = now + cfg.ae_interval
        if not self.caught_up and now >= self._next_catchup:
            self._catchup_start(now, ready)
        ready.wake(self._next_wake())
        return ready

    def on_message(self, now: float, src: NodeId, msg: Any) -> Ready:
        ready = Ready()
        self.last_heard[src] = now
        if isinstance(msg, Gossip):
            self._on_gossip(now, src, msg, ready)
        elif isinstance(msg, Push):
            self._on_push(now, src, msg, ready)
        elif isinstance(msg, PushAck):
            self._on_push_ack(src, msg)
        elif isinstance(msg, AeRanges):
            self._on_ranges(src, msg, ready)
        elif isinstance(msg, AeLeaves):
            self._on_leaves(src, msg, ready)
        elif isinstance(msg, AeStates):
            self._on_states(src, msg, ready)
        return ready

    def _apply_received(self, upd: Update, carrier: bytes, now: float) -> bool:
        """Apply an update a peer sent; a traced one inside a span continuing its trace,
        whose carrier then travels on with the update (relays, gossip)."""
        if not carrier:
            return self._apply(upd, now)
        attrs: dict[str, str | int] = {
            "novacron.key": upd.key,
            "novacron.origin": upd.origin,
            "novacron.seq": upd.seq,
        }
        with self.spans.span("sync.apply", carrier, attrs) as mine:
            self.applying = mine or carrier
            try:
                ok = self._apply(upd, now)
            finally:
                self.applying = b""
        if ok:
            self.traces.put(Dot(upd.origin, upd.seq), mine or carrier)
        return ok

    def _apply(self, upd: Update, now: float, hook: bool = True) -> bool:
        try:
            delta = decode_crdt(upd.delta)
        except ValueError:
            return False  # a garbage delta costs that update, not the node
        self._check_concurrency(upd, hook)
        self.store.merge(upd.key, delta)
        dot = Dot(upd.origin, upd.seq)
        self.seen.add(dot)
        self.buffer[dot] = (upd, now)
        self._note_crdt_top(dot, upd.key, delta)
        if hook and self.on_apply is not None:
            self.on_apply(self.id, upd, now)
        return True

    def _check_concurrency(self, upd: Update, hook: bool) -> None:
        """Compare the update's per-key clock with ours: if we saw writes of the key that
        its origin had not, the two are concurrent (reported when deps were sent)."""
        clock = self.key_clocks.setdefault(upd.key, VersionVector())
        if upd.deps:
            deps = upd.deps
            concurrent = any(
                c > deps.get(r, 0) and not self._dead_and_safe(r, c)
                for r, c in clock.counters.items()
                if r != upd.origin
            )
            if concurrent:
                self.concurrent_updates += 1
                if hook and self.on_concurrent is not None:
                    self.on_concurrent(upd.key, upd, clock.copy())
            clock.merge_in_place(VersionVector(deps))
            if self.floors:
                self._strip(clock)
        if upd.seq > clock.get(upd.origin):
            clock.counters[upd.origin] = upd.seq
