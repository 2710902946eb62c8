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
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import msgpack

from novacron_core.clocks import HLC, CausalContext, Dot, VersionVector
from novacron_core.machine import NodeId, Ready
from novacron_core.sync.crdt import LWWRegister, MVRegister, ORMap
from novacron_core.sync.crdt.base import Crdt, decode_crdt, encode_crdt
from novacron_core.sync.merkle import LEAVES, RANGES
from novacron_core.sync.messages import AeLeaves, AeRanges, AeStates, Gossip, Update
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


@dataclass(frozen=True)
class Mutate:
    """Client request: ``mutate(value)`` on ``key`` (created as ``kind``); replies the dot."""

    key: str
    kind: type[Crdt]
    mutate: Callable[[Any], Crdt]


@dataclass(frozen=True)
class Read:
    key: str


def _split(replica: str) -> tuple[str, int | None]:
    """``node~epoch`` -> (node, epoch); epoch None if the id has no epoch."""
    node, sep, epoch = replica.rpartition("~")
    if not sep or not epoch.isdigit():
        return replica, None
    return node, int(epoch)


def _floors(raw: Any) -> dict[str, int]:
    if not isinstance(raw, dict) or not all(
        type(k) is str and type(v) is int and v >= 0 for k, v in raw.items()
    ):
        raise ValueError("malformed retired epochs")
    return dict(raw)


class CatchingUp(RuntimeError):
    """A mutation refused by a restarted replica that has not caught up with a peer yet
    (only for types whose GC drops dots, see ``Crdt.COLLAPSES``); nothing was changed."""

    def __init__(self, key: str) -> None:
        super().__init__(
            f"{key!r}: this replica restarted and is catching up with its peers; "
            "nothing was changed, retry shortly"
        )


CONFLICTING: tuple[type[Crdt], ...] = (LWWRegister, MVRegister, ORMap)
ApplyHook = Callable[[NodeId, Update, float], None]
ConcurrentHook = Callable[[str, Update, VersionVector], None]


class SyncNode:
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
    ) -> None:
        self.id = node_id
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

    # ------------------------------------------------------------ durability

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

    def _successor(self, epoch: int) -> int:
        """The epoch after ``epoch``: ``1`` on a first start (an empty disk), else
        ``restarts << 16 | 16 random bits``."""
        count = (epoch >> 16 if epoch >= 1 << 16 else epoch) + 1
        return 1 if count == 1 else count << 16 | self._nonce

    def _reincarnate(self, behind: int, ready: Ready) -> None:
        """A peer knows an epoch of ours at least as high as this one: our disk went back in
        time. Take the next epoch after it (a new replica id; dots minted under this one stay
        unique and valid) and catch up again, so that peers drop what they kept about it."""
        self.epoch = self._successor(behind)
        self.replica = self.store.replica = self.hlc.replica = f"{self.id}~{self.epoch}"
        self._seq = 0
        self._journal(ready, ("epoch", self.epoch))
        ready.sync = True
        self.caught_up = False
        self._catchup_vv = None
        self._merged_from = set()
        self._next_catchup = 0.0

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

    # ------------------------------------------------------------ Machine

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

    def update(self, now: float, m: Mutate, ready: Ready) -> Dot:
        delta = self.store.update(m.key, m.kind, m.mutate)
        self._seq += 1
        ts = self.hlc.now(int(now * 1000))
        clock = self.key_clocks.setdefault(m.key, VersionVector())
        clock.counters[self.replica] = self._seq
        deps = dict(clock.counters) if self.config.causal_deps and m.kind in CONFLICTING else {}
        upd = Update(self.replica, self._seq, m.key, encode_crdt(delta), ts.wall_ms, deps)
        dot = Dot(self.replica, self._seq)
        self.seen.add(dot)
        self.buffer[dot] = (upd, now)
        self._note_crdt_top(dot, m.key, delta)
        self._journal(ready, ("u", upd))
        if self.on_apply is not None:
            self.on_apply(self.id, upd, now)
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
        elif isinstance(msg, AeRanges):
            self._on_ranges(src, msg, ready)
        elif isinstance(msg, AeLeaves):
            self._on_leaves(src, msg, ready)
        elif isinstance(msg, AeStates):
            self._on_states(src, msg, ready)
        return ready

    # ------------------------------------------------------------ gossip

    def _missing_for(
        self, peer: NodeId, now: float, vv: VersionVector | None = None
    ) -> list[Update]:
        """Buffered updates ``peer`` lacks (by ``vv`` or what it last told us)."""
        known = vv if vv is not None else self.known.get(peer, VersionVector())
        inflight = self.inflight.setdefault(peer, {})
        retry = now - self.config.retry_after
        out: list[Update] = []
        for dot, (upd, _) in self.buffer.items():
            if known.contains(dot) or inflight.get(dot, -1.0) > retry:
                continue
            out.append(upd)
            inflight[dot] = now
            if len(out) >= self.config.max_batch:
                break
        return out

    def _report(self, vv: dict[str, int]) -> list[int]:
        """Our stability report as lags behind ``vv`` (in its order): small ints on the wire."""
        stable = self.stable.counters
        if not stable:
            return []
        return [c - stable.get(r, 0) for r, c in vv.items()]

    def _gossip_round(self, now: float, ready: Ready) -> None:
        cfg = self.config
        vv = self.seen.vv.to_wire()
        report = self._report(vv)
        if cfg.pull:
            if (
                cfg.one_pull_at_a_time
                and self._pull_outstanding is not None
                and now - self._pull_outstanding < cfg.pull_timeout
            ):
                return
            for p in self.selector.pick(cfg.fanout):
                ready.send(p, Gossip(vv, [], [], True, self.epoch, report, dict(self.floors)))
            self._pull_outstanding = now
            return
        idle = self._rounds % cfg.idle_every == 0
        for p in self.selector.pick(cfg.fanout):
            ups = self._missing_for(p, now)
            if ups or idle:
                ready.send(p, Gossip.of(vv, ups, True, self.epoch, report, self.floors))

    def _on_gossip(self, now: float, src: NodeId, msg: Gossip, ready: Ready) -> None:
        try:
            their = VersionVector.from_wire(msg.vv)
            updates = msg.updates()
            report = self._parse_report(msg)
            floors = _floors(msg.floors)
        except ValueError:
            return
        if self.floors:
            self._strip(their)
            if report is not None:
                self._strip(report)
        if self._incarnation(src, msg.epoch):
            self.known[src] = their
            if report is not None:
                self.reports[src] = report
            self.peer_floors[src] = floors
        elif msg.epoch == self.epochs.get(src, 0):
            self.known.setdefault(src, VersionVector()).merge_in_place(their)
            if report is not None:
                self.reports[src] = report
            self.peer_floors[src] = floors
        elif msg.reply:  # an older incarnation asks: tell it (its disk may have gone back)
            ready.send(src, AeLeaves({}, refused=True, epoch=self.epochs[src]))
        # (an older incarnation's vector and report are stale: its successor replaced them)
        known = self.known.setdefault(src, VersionVector())
        inflight = self.inflight.setdefault(src, {})
        if inflight:
            for dot in [d for d in inflight if known.contains(d)]:
                del inflight[dot]
        for upd in updates:
            fresh = upd.seq > 0 and not self.seen.contains(Dot(upd.origin, upd.seq))
            if fresh and self.floors and self._retired(upd.origin):
                continue  # every replica applied it before the epoch was retired
            if fresh and self._apply(upd, now):
                self._journal(ready, ("u", upd))
        if self.config.pull and not msg.reply:
            self._pull_outstanding = None
        if msg.reply:
            # exact: the sender told us its vector; skip nothing that is merely in flight
            self.inflight[src] = {}
            ups = self._missing_for(src, now, their)
            if ups or updates or self.config.pull:  # a puller waits for an answer
                vv = self.seen.vv.to_wire()
                msg_out = Gossip.of(vv, ups, False, self.epoch, self._report(vv), self.floors)
                ready.send(src, msg_out)

    @staticmethod
    def _parse_report(msg: Gossip) -> VersionVector | None:
        if not msg.stable:
            return None
        if len(msg.stable) != len(msg.vv):
            raise ValueError("a stability report has one lag per vector entry")
        out: dict[str, int] = {}
        for (r, c), lag in zip(msg.vv.items(), msg.stable, strict=True):
            if type(lag) is not int or not 0 <= lag <= c:
                raise ValueError("malformed stability report")
            out[r] = c - lag
        return VersionVector(out)

    def _incarnation(self, src: NodeId, epoch: int) -> bool:
        """Note ``src``'s epoch; True if it is newer than any heard before.

        A newer incarnation may hold less than its predecessor acknowledged (lost unsynced
        writes, an old snapshot), so everything the predecessor reported is dropped *before*
        it can be used again: its vector, its stability report, what was in flight to it.
        """
        if epoch <= self.epochs.get(src, 0):
            return False
        self.epochs[src] = epoch
        self.known[src] = VersionVector()
        self.reports.pop(src, None)
        self.peer_floors.pop(src, None)
        self.inflight[src] = {}
        return True

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

    # ------------------------------------------------------------ causal stability, GC

    def _note_crdt_top(self, dot: Dot, key: str, delta: Crdt) -> None:
        """Remember which CRDT-level dots of the key update ``dot`` carries.

        Update dots ``(origin, seq)`` count every update of a node; a CRDT's dots count the
        mutations of one key (same replica id, another counter). An origin mints the key's
        dots in seq order, so once update ``(origin, s)`` is stable, every dot of ``origin`` in
        the key up to the highest one in that update's delta is stable too.
        """
        if not self.config.gc or type(self.store.get(key)) is not delta.state_class():
            # (a delta the store refused because the key holds another type maps to nothing)
            return
        top = delta.top(dot.replica)  # 0: counters, LWW registers, G/2P-sets
        if top:
            self._crdt_top[dot] = (key, top)

    def _collect(self) -> None:
        """Compute causal stability and drop what only unstable updates need.

        Two levels. ``stable``: the meet of every peer's last vector (of its current
        incarnation) and ours: updates every replica has applied. The forwarding buffer and
        in-flight records drop those (anti-entropy repairs anything a peer misses after that,
        e.g. after losing its disk). ``stable`` is also what we report to peers.

        ``safe``: the meet of our ``stable`` and every peer's last report: updates every replica
        knows every replica has applied. Only ``safe`` updates let a key be garbage-collected
        in its own dot space, because GC may drop what replicas hold (the RGA's tombstones,
        ``Crdt.COLLAPSES``) and a replica that comes back with less than it acknowledged must
        not be able to act on what it still holds without what was dropped. A restarted
        replica merges the full state of a caught-up peer that already forgot its
        predecessor before it may issue such ops; any
        report that peer gave before covered only dots it held (and still holds), any report
        it gives after counts the successor's own vector. A crashed or partitioned peer
        reports nothing new, so both points stay put until it is back.
        """
        peers_meet = self._stability()
        safe = self.stable
        for p in self.peers:
            safe = safe.meet(self.reports.get(p, VersionVector()))
        self.safe = safe
        for dot in [d for d in self.buffer if peers_meet is None or peers_meet.contains(d)]:
            del self.buffer[dot]
        for flying in self.inflight.values():
            for dot in [d for d in flying if d not in self.buffer]:
                del flying[dot]
        if self.config.gc:
            self._retire()
        if not self._crdt_top and not self._settling:
            return
        advanced: set[str] = set()
        # (``safe`` is a contiguous prefix of our own vector: we applied every earlier update
        # of the origin, so our copy of the key has seen every CRDT dot the mapping names)
        ready: list[tuple[Dot, str, int]] = []
        settling: list[tuple[Dot, str, int]] = []
        for dot in [d for d in self._crdt_top if safe.contains(d)]:
            key, top = self._crdt_top.pop(dot)
            settles = getattr(self.store.get(key), "SETTLES", False)
            (settling if settles else ready).append((dot, key, top))
        # a key whose type SETTLES advances only once this round's vectors are safe as well:
        # every update any replica made before it applied this round's safe ones is then
        # applied everywhere (an RGA tombstone may go once no insert naming it can arrive)
        if settling:
            frontier = self.seen.vv.copy()
            for row in self.known.values():
                frontier.merge_in_place(row)
            self._settling.append((frontier, settling))
        while self._settling and all(
            safe.get(r) >= c or self._retired(r) for r, c in self._settling[0][0].counters.items()
        ):
            ready += self._settling.pop(0)[1]
        for dot, key, top in ready:
            ks = self.key_stable.setdefault(key, VersionVector())
            if top > ks.get(dot.replica):
                ks.counters[dot.replica] = top
                advanced.add(key)
        for key in advanced:
            self.store.gc(key, self.key_stable[key])
        self.gc_keys += len(advanced)

    def _stability(self) -> VersionVector | None:
        """Recompute ``stable``; returns the meet of the peers' vectors (None: no peers)."""
        peers_meet: VersionVector | None = None
        for p in self.peers:
            vv = self.known.get(p, VersionVector())
            peers_meet = vv.copy() if peers_meet is None else peers_meet.meet(vv)
        mine = self.seen.vv
        self.stable = mine.copy() if peers_meet is None else peers_meet.meet(mine)
        return peers_meet

    # ------------------------------------------------------------ dead epochs

    def _dead_and_safe(self, replica: str, seq: int) -> bool:
        """A write of a dead epoch that every replica has applied: a writer that retired the
        epoch leaves it out of its per-key clock, so its absence does not mean concurrency
        (conflict detection treats retired epochs as seen)."""
        if self.safe.get(replica) < seq:
            return False
        node, epoch = _split(replica)
        current = self.epoch if node == self.id else self.epochs.get(node, 0)
        return epoch is not None and epoch < current

    def _retired(self, replica: str) -> bool:
        node, epoch = _split(replica)
        return epoch is not None and epoch <= self.floors.get(node, 0)

    def _strip(self, vv: VersionVector) -> None:
        for r in [r for r in vv.counters if self._retired(r)]:
            del vv.counters[r]

    def _raise_floors(self, floors: Mapping[str, int]) -> bool:
        raised = False
        for node, f in floors.items():
            if f > self.floors.get(node, 0):
                self.floors[node] = f
                raised = True
        return raised

    def _retire(self) -> None:
        """Retire dead epochs: drop their entries from every vector the engine keeps.

        Epoch ``x`` of node ``N`` is retired here once a newer epoch of ``N`` is known here,
        ``N~x``'s updates we hold are contiguous (``n`` of them) and none is buffered, and
        every peer either retired it already or both sent a vector and reported stable
        exactly ``n`` of them: every replica has every update of ``N~x`` anyone has, and
        knows that all others do. Epochs retire in order per node, so one floor per node
        (``floors[N]``: every epoch up to it is retired) replaces all their entries; updates
        of retired epochs are ignored, vectors on the wire leave them out, and peers learn
        the floors with the vectors (a catching-up replica takes its source's).
        """
        epochs: dict[str, set[int]] = {}

        def note(replica: str) -> None:
            node, epoch = _split(replica)
            if epoch is not None and epoch > self.floors.get(node, 0):
                epochs.setdefault(node, set()).add(epoch)

        for r in self.seen.vv.counters:
            note(r)
        for vv in [*self.known.values(), *self.reports.values()]:
            for r in vv.counters:
                note(r)
        if not epochs:
            return
        clouded = {d.replica for d in self.seen.cloud}
        buffered = {d.replica for d in self.buffer}
        raised: dict[str, int] = {}
        for node, found in epochs.items():
            current = self.epoch if node == self.id else self.epochs.get(node, 0)
            for x in sorted(found):
                replica = f"{node}~{x}"
                if x >= current or replica in clouded or replica in buffered:
                    break
                if not self._agreed(node, x, replica):
                    break
                raised[node] = x
        if raised and self._raise_floors(raised):
            self._forget_retired()
            self._retiring.append(("floors", dict(self.floors)))

    def _agreed(self, node: str, x: int, replica: str) -> bool:
        n = self.seen.vv.get(replica)
        for p in self.peers:
            if self.peer_floors.get(p, {}).get(node, 0) >= x:
                continue
            report = self.reports.get(p)
            row = self.known.get(p, VersionVector())
            if report is None or row.get(replica) != n or report.get(replica) != n:
                return False
        return True

    def _forget_retired(self) -> None:
        if not self.floors:
            return
        self._strip(self.seen.vv)
        self.seen.cloud = {d for d in self.seen.cloud if not self._retired(d.replica)}
        for dot in [d for d in self._crdt_top if self._retired(d.replica)]:
            del self._crdt_top[dot]  # (those keys are just not collected further)
        for dot in [d for d in self.buffer if self._retired(d.replica)]:
            del self.buffer[dot]  # (e.g. replayed from the journal: every replica has them)
        for flying in self.inflight.values():
            for dot in [d for d in flying if self._retired(d.replica)]:
                del flying[dot]
        for vv in [
            self.stable,
            self.safe,
            *self.known.values(),
            *self.reports.values(),
            *self.key_clocks.values(),
            *self.key_stable.values(),
        ]:
            self._strip(vv)

    def vector_entries(self) -> int:
        """Entries of every vector the engine keeps (what restarts add and retirement drops);
        the CRDTs' own contexts and counters are counted by :meth:`metadata`."""
        vvs = [
            self.seen.vv,
            *self.known.values(),
            *self.reports.values(),
            *self.key_clocks.values(),
            *self.key_stable.values(),
        ]
        return sum(len(v.counters) for v in vvs) + len(self.seen.cloud)

    def metadata(self) -> dict[str, int]:
        """Entries kept for causality rather than for values (what GC bounds)."""
        dots = cloud = vv = 0
        for _, v in self.store:
            ctx = getattr(v, "ctx", None)
            if isinstance(ctx, CausalContext):
                cloud += len(ctx.cloud)
                vv += len(ctx.vv.counters)
                entries = getattr(v, "entries", {})
                for e in entries.values():
                    dots += len(e) if isinstance(e, dict) else 1
        return {
            "buffer": len(self.buffer),
            "inflight": sum(len(f) for f in self.inflight.values()),
            "crdt_tops": len(self._crdt_top) + sum(len(w) for _, w in self._settling),
            "dots": dots,
            "cloud": cloud,
            "vv": vv,
        }

    def replication_lag(self, now: float) -> dict[NodeId, float]:
        """Per peer: age of the oldest update here that the peer has not acknowledged."""
        out: dict[NodeId, float] = {}
        for p in self.peers:
            known = self.known.get(p, VersionVector())
            oldest = min(
                (t for d, (_, t) in self.buffer.items() if not known.contains(d)), default=now
            )
            out[p] = now - oldest
        return out

    # ------------------------------------------------------------ anti-entropy

    def _anti_entropy(self, ready: Ready) -> None:
        if self.peers:
            peer = self.rng.choice(sorted(self.peers))
            ready.send(peer, AeRanges(self.store.merkle.range_hashes(), self.epoch))

    # A restarted replica catches up with one anti-entropy exchange it starts itself: the
    # peer forgets the predecessor on the first message, then (if caught up itself) answers
    # with its vector at that moment even when nothing differs; once the states of every
    # differing leaf are merged, our store holds everything that peer held then, so our
    # vector may take its vector in (journaled, so a restart keeps it).

    def _catchup_start(self, now: float, ready: Ready) -> None:
        self._catchup += 1
        self._catchup_vv = None
        # back off: an attempt's answer (whole states of the keys that differ) may take long
        self._next_catchup = now + self.config.retry_after * 2 ** min(self._catchup - 1, 4)
        rest = sorted(set(self.peers) - self._merged_from)
        peer = self.rng.choice(rest or sorted(self.peers))
        ready.send(
            peer, AeRanges(self.store.merkle.range_hashes(), self.epoch, catchup=self._catchup)
        )

    def _catchup_done(
        self, ready: Ready, src: NodeId, partial: bool, vv: dict[str, int], floors: Any
    ) -> None:
        """We hold everything ``src`` held when it answered. A caught-up peer suffices; a
        peer catching up itself (``partial``) counts once every peer's state is merged
        (after a whole-cluster restart no peer is caught up, and none still uses what an
        earlier incarnation reported, so the union of their states is all there is)."""
        self._catchup_vv = None
        self._merged_from.add(src)
        if not partial or self._merged_from >= set(self.peers):
            self.caught_up = True
        else:
            self._next_catchup = 0.0  # on to a peer not merged yet
        try:
            their = VersionVector.from_wire(vv)
            retired = _floors(floors)
        except ValueError:
            return
        self.seen.merge(CausalContext(their))
        self._journal(ready, ("seen", their.to_wire()))
        # the peer's store held every retired epoch's effects, and now ours does too
        if self._raise_floors(retired):
            self._forget_retired()
            self._journal(ready, ("floors", dict(self.floors)))

    def _on_ranges(self, src: NodeId, msg: AeRanges, ready: Ready) -> None:
        self._incarnation(src, msg.epoch)
        mine = self.store.merkle.range_hashes()
        if len(msg.hashes) != len(mine):
            return
        differ = [r for r, (a, b) in enumerate(zip(mine, msg.hashes, strict=True)) if a != b]
        behind = self.epochs.get(src, 0)
        if msg.catchup and msg.epoch < behind:  # its disk went back in time: re-epoch first
            ready.send(src, AeLeaves({}, msg.catchup, refused=True, epoch=behind))
        elif msg.catchup:
            leaves = {r: self.store.merkle.leaf_hashes(r) for r in differ}
            vv = self.seen.vv.to_wire()
            partial = not self.caught_up
            ready.send(
                src,
                AeLeaves(leaves, msg.catchup, vv, floors=dict(self.floors), partial=partial),
            )
        elif differ:
            ready.send(src, AeLeaves({r: self.store.merkle.leaf_hashes(r) for r in differ}))

    def _on_leaves(self, src: NodeId, msg: AeLeaves, ready: Ready) -> None:
        if msg.refused and msg.epoch > self.epoch:
            self._reincarnate(msg.epoch, ready)
            return
        catchup = msg.catchup and msg.catchup == self._catchup and not self.caught_up
        if msg.catchup and not catchup:
            return  # an answer to an attempt we gave up on
        if msg.refused:
            self._next_catchup = 0.0  # ask another peer on the next tick
            return
        leaves: list[int] = []
        for r, theirs in msg.leaves.items():
            if not 0 <= r < RANGES or len(theirs) != LEAVES:
                return
            mine = self.store.merkle.leaf_hashes(r)
            leaves += [r * LEAVES + i for i in range(LEAVES) if mine[i] != theirs[i]]
        if catchup and not leaves:
            self._catchup_done(ready, src, msg.partial, msg.vv, msg.floors)
        elif leaves:
            if catchup:
                self._catchup_vv = msg.vv
                self._catchup_floors = msg.floors
                self._catchup_partial = msg.partial
            ready.send(src, AeStates(leaves, self._states(leaves), True, msg.catchup))

    def _on_states(self, src: NodeId, msg: AeStates, ready: Ready) -> None:
        for key, blob in msg.states.items():
            try:
                value = decode_crdt(blob)
            except ValueError:
                continue
            self.store.merge(key, value)
            self._journal(ready, ("s", (key, blob)))
        if msg.reply:
            ready.send(src, AeStates(msg.leaves, self._states(msg.leaves), False, msg.catchup))
        elif (
            msg.catchup
            and msg.catchup == self._catchup
            and self._catchup_vv is not None
            and not self.caught_up
        ):
            vv, floors, partial = self._catchup_vv, self._catchup_floors, self._catchup_partial
            self._catchup_done(ready, src, partial, vv, floors)

    def _states(self, leaves: list[int]) -> dict[str, bytes]:
        out: dict[str, bytes] = {}
        for leaf in leaves:
            if 0 <= leaf < RANGES * LEAVES:
                for key in self.store.merkle.keys_in(leaf):
                    v = self.store.get(key)
                    if v is not None:
                        out[key] = encode_crdt(v)
        return out
