"""One region node as one sans-IO machine: what a ``novacron node`` process is.

:class:`RegionNode` composes the protocol machines a node runs:

* the region's **consensus member** (the region setting's protocol, through
  :mod:`novacron_core.consensus.registry`), which applies committed commands to the
  region's KV/VM state machine;
* the **federation replica** (:class:`~novacron_core.sync.engine.SyncNode`), present once
  the node has a federation plan: gossip, anti-entropy, the journal;
* the **publisher** (:mod:`.publisher`): on the region's leader, what the group committed
  becomes CRDT deltas in the replica, and a heartbeat mark every ``heartbeat_interval``;
* with ``replication.mode: sync``, the wait (:mod:`.syncrep`) that holds a VM write's reply
  until ``syncFactor`` other regions acknowledged its record;
* the **conflict engine** (:mod:`novacron_core.conflict.engine`), fed every change of the
  replica's VM copies: it merges the regions' copies of each VM into the record the node
  shows, detects and decides conflicts by the federation's policies, and logs them (audit
  events are writes of their own, :data:`CONFLICT`); a region's VM writes are prepared on
  top of what it knows (:class:`PrepareVM`, answered by the leader).

Tracing (``observe.spans``): a client request may come wrapped in :class:`Traced` with its
trace carrier; a proposal's carrier is kept for its key until the publisher publishes that
key, in a ``federation.publish`` span whose carrier travels with the update in the sync
messages. In the other regions the replica applies it in a ``sync.apply`` span and the
conflict engine merges the copy in a ``conflict.merge`` span: one trace from the client's
request to the merge in every region. The spans come from the injected span maker; nothing
here reads a clock for them.

The parts talk only through what their ``Ready`` carries: the member's ``committed`` and
``soft_state`` feed the publisher, whose mutations become the replica's local updates in the
same step, so a commit's deltas leave in the very Ready whose reply tells the client. The
runtime's generic driver (``runtime/driver.py``) and the simulator (``sim/world.py``) drive
this same class.

Writes are tagged (:data:`GROUP`, :data:`REPLICA`, :data:`CONFLICT`) so one durable
(``RegionDurable`` here, the runtime's files there) can route each to its part. Messages
are routed by type: the protocol's peer messages to the member, sync messages to the
replica; the replica's peers are named as the federation plan names them (their peer
addresses in the runtime).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from novacron_core.clocks import HLC, HLCTimestamp
from novacron_core.codec import CodecError, decode
from novacron_core.conflict.audit import AuditDurable, MemoryAudit
from novacron_core.conflict.engine import ConflictEngine
from novacron_core.conflict.ipam import default_pools
from novacron_core.conflict.writes import Change, WriteContext
from novacron_core.consensus.interface import (
    LEADER,
    NOT_LEADER,
    REJECTED,
    ChangeMember,
    ConsensusProtocol,
    GroupDurable,
    GroupMember,
    GroupTuning,
    MemberAddress,
    Propose,
    Read,
    Reply,
    SoftState,
    TransferLeader,
)
from novacron_core.consensus.kv import KVCommand, KVStore
from novacron_core.federation import vmflow
from novacron_core.federation.config import FederationPlan
from novacron_core.machine import NodeId, Ready
from novacron_core.observe.spans import NO_SPANS, Carriers, SpanMaker
from novacron_core.region.publisher import Publisher
from novacron_core.region.syncrep import SyncWait
from novacron_core.sync import engine as sync_engine
from novacron_core.sync.engine import Mutate, SyncNode
from novacron_core.sync.messages import AeLeaves, AeRanges, AeStates, Gossip, Push, PushAck
from novacron_core.sync.persist import MemoryDurable

GROUP, REPLICA, CONFLICT = "g", "r", "c"
SYNC_MESSAGES: tuple[type, ...] = (Gossip, Push, PushAck, AeRanges, AeLeaves, AeStates)
GROUP_REQUESTS = (Propose, Read, ChangeMember, TransferLeader)
FederationRead = sync_engine.Read  # read one key of the federation replica


@dataclass(frozen=True)
class PrepareVM:
    """Prepare this region's write of a VM (the leader answers: a
    :class:`~novacron_core.conflict.writes.Prepared` to commit with a compare-and-swap on
    the region's copy, a ``Refusal`` or ``Unchanged``; elsewhere ``Reply(NOT_LEADER)``)."""

    vm: str
    change: Change
    who: str = ""
    source: str = "api"
    role: str = ""


@dataclass(frozen=True)
class Traced:
    """A request and the trace carrier (``observe.tracing.to_carrier``) of the client call
    it serves; the machine answers it as it answers ``request``."""

    request: Any
    carrier: bytes


class RegionDurableState(Protocol):
    """Where a region node's writes go: the member's durable state and the replica's."""

    @property
    def group(self) -> GroupDurable: ...

    @property
    def replica(self) -> MemoryDurable: ...

    @property
    def audit(self) -> AuditDurable: ...

    def apply(self, writes: list[Any]) -> None: ...


class RegionDurable:
    """The simulator's durable state of a region node (what survives a crash)."""

    def __init__(self, group: GroupDurable) -> None:
        self.group = group
        self.replica = MemoryDurable()
        self.audit = MemoryAudit()

    def apply(self, writes: list[Any]) -> None:
        route(writes, self.group.apply, self.replica.apply, self.audit.apply)


def route(
    writes: list[Any],
    group: Callable[[list[Any]], None],
    replica: Callable[[list[Any]], None],
    audit: Callable[[list[Any]], None] | None = None,
) -> None:
    """Hand each tagged write to its part, keeping their order within each part."""
    g = [w for tag, w in writes if tag == GROUP]
    r = [w for tag, w in writes if tag == REPLICA]
    c = [w for tag, w in writes if tag == CONFLICT]
    if g:
        group(g)
    if r:
        replica(r)
    if c and audit is not None:
        audit(c)


@dataclass(frozen=True)
class RegionSpec:
    """Who a region node is (fixed for a process's life)."""

    node_id: NodeId  # its id in the region's group
    region: str
    protocol: ConsensusProtocol
    tuning: GroupTuning = field(default_factory=GroupTuning)
    voters: tuple[str, ...] = ()  # the bootstrap members (empty: a joiner)
    addresses: tuple[MemberAddress, ...] = ()
    abstain: bool = False  # lost its state: never vote until re-added (see the interface)
    fed_id: str = ""  # its name in the federation (default: node_id)
    seed: int = 0  # every random choice of the parts derives from it
    wall_offset: float = 0.0  # wall clock = now + wall_offset (heartbeat marks only)
    state_machine: Callable[[], KVStore] = KVStore


class RegionNode:
    def __init__(
        self,
        spec: RegionSpec,
        durable: RegionDurableState,
        plan: FederationPlan | None = None,
        spans: SpanMaker = NO_SPANS,
    ) -> None:
        self.spec = spec
        self.spans = spans
        self._traces = Carriers(1024)  # group key -> carrier of its traced proposal
        self.durable = durable
        self.region = spec.region
        self.fed_id = spec.fed_id or spec.node_id
        self.rng = random.Random(spec.seed)
        self.wall_offset = spec.wall_offset
        self.kv = spec.state_machine()
        self.group: GroupMember = spec.protocol.member(
            spec.node_id,
            durable.group,
            self.kv,
            random.Random(self.rng.getrandbits(64)),
            spec.tuning,
            spec.voters,
            spec.addresses,
        )
        self.group.abstain = spec.abstain
        self.peer_messages: tuple[type, ...] = (*spec.protocol.peer_messages, *SYNC_MESSAGES)
        self._group_types = spec.protocol.peer_messages
        self.publisher = Publisher(self.region)
        self.syncwait = SyncWait(self.region)
        self.conflicts = ConflictEngine(
            self.region, durable.audit, pools=default_pools([self.region])
        )
        self.hlc = HLC(self.region, max_drift_ms=10**12)
        self.replica: SyncNode | None = None
        self.plan: FederationPlan | None = None
        self._pending_plan = plan
        self.soft: SoftState = self.group.soft_state()
        self._wake_group: float | None = None
        self._wake_replica: float | None = None
        self._started = False

    # ------------------------------------------------------------ Machine

    def on_start(self, now: float) -> Ready:
        out = Ready()
        self._group(now, self.group.on_start(now), out)
        self._started = True
        if self._pending_plan is not None:
            plan, self._pending_plan = self._pending_plan, None
            self._federate(now, plan, out)
        return self._finish(now, out)

    def on_message(self, now: float, src: NodeId, msg: Any) -> Ready:
        out = Ready()
        if isinstance(msg, self._group_types):
            self._group(now, self.group.on_message(now, src, msg), out)
        elif isinstance(msg, SYNC_MESSAGES) and self.replica is not None:
            self._replica(self.replica.on_message(now, src, msg), out)
            self._settle(now, out)  # (an acknowledgement may release a held reply)
        return self._finish(now, out)

    def on_tick(self, now: float) -> Ready:
        out = Ready()
        if self._wake_group is not None and now >= self._wake_group:
            self._group(now, self.group.on_tick(now), out)
        if self.replica is not None:
            if self._wake_replica is not None and now >= self._wake_replica:
                self._replica(self.replica.on_tick(now), out)
            hb = self.publisher.heartbeat(
                now, int((now + self.wall_offset) * 1000), self.replica.hlc
            )
            if hb is not None:
                self._local_update(now, hb, out)
        self._settle(now, out)
        return self._finish(now, out)

    def on_request(self, now: float, request_id: Any, request: Any) -> Ready:
        out = Ready()
        if isinstance(request, Traced):
            if isinstance(request.request, Propose) and self.soft.role == LEADER:
                self._trace_proposal(request.request.data, request.carrier)
            request = request.request
        if isinstance(request, GROUP_REQUESTS):
            if isinstance(request, Propose):
                self.syncwait.proposed(request_id, request.data)
            self._group(now, self.group.on_request(now, request_id, request), out)
        elif isinstance(request, PrepareVM):
            out.reply(request_id, self._prepare(now, request))
        elif isinstance(request, FederationRead):
            value = None if self.replica is None else self.replica.store.value(request.key)
            out.reply(request_id, value)
        else:
            out.reply(request_id, Reply(REJECTED, detail=f"unknown request {request!r}"))
        return self._finish(now, out)

    def _trace_proposal(self, data: bytes, carrier: bytes) -> None:
        if not carrier:
            return
        try:
            key = decode(data, KVCommand).key
        except CodecError:
            return
        if key.startswith(vmflow.PREFIX):
            self._traces.put(key, carrier)

    def _publish(self, now: float, m: Mutate, out: Ready) -> None:
        """Publish one mutation; a traced proposal's record in a span whose carrier goes
        with the update to the other regions."""
        carrier = self._traces.pop(vmflow.kv_key(m.key))
        if not carrier:
            self._local_update(now, m, out)
            return
        attrs: dict[str, str | int] = {
            "novacron.key": m.key,
            "novacron.log_index": self.publisher.applied,
        }
        with self.spans.span("federation.publish", carrier, attrs) as mine:
            self._local_update(now, replace(m, trace=mine or carrier), out)

    def _on_copy(self, key: str, value: Any) -> None:
        carrier = self.replica.applying if self.replica is not None else b""
        if not carrier:
            self.conflicts.on_copy(key, value)
            return
        with self.spans.span("conflict.merge", carrier, {"novacron.key": key}):
            self.conflicts.on_copy(key, value)

    def wall_ms(self, now: float) -> int:
        return int((now + self.wall_offset) * 1000)

    def _prepare(self, now: float, req: PrepareVM) -> Any:
        if self.soft.role != LEADER:
            return Reply(NOT_LEADER, leader=self.soft.leader, detail="not the leader")
        wall = self.wall_ms(now)
        seen = self.conflicts.latest_stamp
        if seen is not None:
            self.hlc.update(HLCTimestamp(*seen), wall)
        ts = self.hlc.now(wall)
        epoch = self.plan.fencing.get(self.region, 0) if self.plan is not None else 0
        ctx = WriteContext(
            self.region, (ts.wall_ms, ts.logical, self.region), epoch, req.who, req.source, req.role
        )
        own = self.kv.data.get(vmflow.PREFIX + req.vm)
        return self.conflicts.prepare(req.vm, req.change, own, ctx, now)

    # ------------------------------------------------------------ other inputs

    def on_peer_unreachable(self, now: float, peer: NodeId) -> Ready:
        """The transport lost its connection to ``peer`` (a group member's id)."""
        out = Ready()
        self._group(now, self.group.on_peer_unreachable(now, peer), out)
        return self._finish(now, out)

    def on_federation(self, now: float, plan: FederationPlan) -> Ready:
        """A (new or changed) federation plan: start the replica, or reconfigure it."""
        out = Ready()
        if not self._started:
            self._pending_plan = plan
        else:
            self._federate(now, plan, out)
        return self._finish(now, out)

    def coalesce(self, messages: list[tuple[NodeId, Any]]) -> list[tuple[NodeId, Any]]:
        """What one batch sends, merged where the protocol knows how (its appends)."""
        return self.spec.protocol.coalesce(messages)

    # ------------------------------------------------------------ composition

    def _group(self, now: float, r: Ready, out: Ready) -> None:
        if r.writes:
            out.writes.extend((GROUP, w) for w in r.writes)
        out.sync = out.sync or r.sync
        out.messages.extend(r.messages)
        if r.wake_at is not None:
            self._wake_group = r.wake_at
        if r.committed:
            out.committed.extend(r.committed)
        if r.soft_state is not None:
            self.soft = out.soft_state = r.soft_state
        if r.committed or r.soft_state is not None:
            self.publisher.observe(r.committed, r.soft_state)
            if self.replica is not None:
                sync = bool(self.syncwait.factor)
                for m in self.publisher.mutations(self.kv.data, self.replica.store):
                    self._publish(now, replace(m, ack=sync), out)
        for rid, reply in r.replies:
            key = self.syncwait.hold(now, rid, reply)
            if key is None:
                out.reply(rid, reply)
            elif self.syncwait.unpublished(key) and self.replica is not None:
                # its record came from an earlier leader: publish it again, to be acknowledged
                again = vmflow.Publish(vmflow.fed_key(key, self.region), self.kv.data.get(key))
                ts = vmflow.stamp(self.publisher.applied, self.region)
                self._local_update(now, replace(vmflow.as_mutation(again, ts), ack=True), out)

    def _settle(self, now: float, out: Ready) -> None:
        for rid, reply in self.syncwait.release(now, self.replica):
            out.reply(rid, reply)

    def _replica(self, r: Ready, out: Ready) -> None:
        if r.writes:
            out.writes.extend((REPLICA, w) for w in r.writes)
        out.sync = out.sync or r.sync
        out.messages.extend(r.messages)
        out.replies.extend(r.replies)
        if r.wake_at is not None:
            self._wake_replica = r.wake_at

    def _local_update(self, now: float, m: Mutate, out: Ready) -> None:
        assert self.replica is not None
        r = Ready()
        dot = self.replica.update(now, m, r)
        if m.ack:
            self.syncwait.published(m.key, dot.counter, self.replica)
        self._replica(r, out)

    def _federate(self, now: float, plan: FederationPlan, out: Ready) -> None:
        self.plan = plan
        self.conflicts.configure(plan.policies, plan.pools or None, plan.fencing)
        self.publisher.heartbeat_interval = plan.heartbeat_interval
        self.syncwait.configure(plan.sync_factor, plan.sync_timeout)
        if self.replica is None:
            self.replica = SyncNode(
                self.fed_id,
                self.region,
                plan.peers,
                self.durable.replica,
                plan.sync,
                seed=self.rng.getrandbits(32),
                spans=self.spans,
            )
            self._replica(self.replica.on_start(now), out)
            store = self.replica.store
            for key in store.keys():  # noqa: SIM118 - iterating a Store yields pairs
                if key.startswith(vmflow.PREFIX):
                    self.conflicts.on_copy(key, store.value(key))
            store.subscribe(vmflow.PREFIX, lambda key, v: self._on_copy(key, v.value()))
            # whatever this node committed before it had a replica is not published yet
            self.publisher.republish()
            if self.publisher.established:
                for m in self.publisher.mutations(self.kv.data, self.replica.store):
                    self._local_update(now, m, out)
        else:
            self._replica(self.replica.reconfigure(now, plan.peers, plan.sync), out)

    def _finish(self, now: float, out: Ready) -> Ready:
        events = self.conflicts.settle(self.wall_ms(now))
        if events:
            out.writes.extend((CONFLICT, w) for w in events)
        beat = self.publisher.wake() if self.replica is not None else None
        for at in (self._wake_group, self._wake_replica, beat, self.syncwait.wake()):
            if at is not None:
                out.wake(at)
        return out
