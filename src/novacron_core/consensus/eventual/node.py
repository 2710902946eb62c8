"""An eventually consistent replica behind the consensus interface (sans-IO).

No agreement: a write is applied at the replica that received it and answered at once
(after its journal entry is fsynced), then replicated by the federation's CRDT engine
(:class:`~novacron_core.sync.engine.SyncNode`: eager push, gossip rounds, Merkle
anti-entropy) among the group's members. Each key is a last-writer-wins register stamped
with a hybrid logical clock that has seen every timestamp the replica holds, so a write
made after seeing another orders after it; concurrent writes resolve the same way on every
replica, and once messages flow every replica holds the same state.

What this promises, and what it does not (every reply says ``consistency: eventual``):
reads are local and may be stale; a compare-and-swap compares with the local value only; a
write acknowledged by a replica survives that replica's crash, but a concurrent write with
a later timestamp may replace it. Sessions deduplicate retries at the replica that applied
them only. Membership is the bootstrap peers: changes are refused, not ignored.

Every replica accepts writes, so each reports itself as leading (``leader`` = itself): a
client never needs a redirect, and the node's readiness means "serving".
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from novacron_core.clocks import HLC, HLCTimestamp
from novacron_core.consensus.eventual.messages import EventualSync, Journal
from novacron_core.consensus.eventual.storage import EventualDurable
from novacron_core.consensus.interface import (
    BARRIER,
    COMMAND,
    LEADER,
    OK,
    REJECTED,
    ChangeMember,
    ConfigState,
    GroupStatus,
    GroupTuning,
    KeyedState,
    MemberAddress,
    Propose,
    Read,
    Reply,
    SoftState,
    TransferLeader,
)
from novacron_core.machine import NodeId, Ready
from novacron_core.sync.crdt import LWWRegister
from novacron_core.sync.engine import Mutate, SyncConfig, SyncNode

PROTOCOL_NAME = "eventual"
REGION = "group"  # the engine is region-aware; a group is one region


@dataclass(frozen=True, slots=True)
class Change:
    """A committed entry as ``Ready.committed`` lists it: a local write, or a key the
    engine changed (as a command that says the same)."""

    index: int
    term: int
    kind: int
    data: bytes


def sync_config(t: GroupTuning) -> SyncConfig:
    return SyncConfig(
        interval=t.heartbeat_interval,
        fanout=2,
        eager=True,  # every local write goes to every member at once; rounds only repair
        ae_interval=max(t.election_timeout * 2, 0.5),
        retry_after=max(t.heartbeat_interval * 4, 0.2),
    )


class EventualMember:
    def __init__(
        self,
        node_id: NodeId,
        durable: EventualDurable,
        sm: KeyedState,
        rng: random.Random,
        tuning: GroupTuning,
        voters: tuple[str, ...] = (),
        addresses: tuple[MemberAddress, ...] = (),
    ) -> None:
        self.id = node_id
        self.sm = sm
        self.abstain = False  # (no votes here: a member that lost its state just catches up)
        voters = tuple(sorted(voters))
        addrs = tuple(sorted((a for a in addresses if a.node in voters), key=lambda a: a.node))
        self.conf = ConfigState(voters, (), addrs)
        self.engine = SyncNode(
            node_id,
            REGION,
            {m: REGION for m in voters},
            durable,
            sync_config(tuning),
            seed=rng.getrandbits(32),
        )
        self.clock = HLC(node_id, max_drift_ms=10**12)  # (monotonic clocks differ per host)
        self.applied = 0
        self.writes = 0  # local writes
        self.merged = 0  # keys changed by replication
        self._dirty: set[str] = set()
        self._wake: float | None = None
        store = self.engine.store
        store.subscribe("", lambda key, _value: self._dirty.add(key))
        for key in store.keys():  # noqa: SIM118 - (the state held before a restart)
            self._observe(key)
            value = store.value(key)
            self.sm.set_value(key, value if isinstance(value, bytes) else None)
        self._dirty.clear()

    # ------------------------------------------------------------ Machine

    def on_start(self, now: float) -> Ready:
        out = Ready()
        self._absorb(self.engine.on_start(now), out)
        # nothing to wait for: this replica serves at once (its owner's publisher, too)
        out.committed.append(Change(0, 0, BARRIER, b""))
        out.soft_state = self.soft_state()
        return self._finish(now, out)

    def on_tick(self, now: float) -> Ready:
        out = Ready()
        if self._wake is not None and now >= self._wake:
            self._wake = None
            self._absorb(self.engine.on_tick(now), out)
        return self._finish(now, out)

    def on_message(self, now: float, src: NodeId, msg: Any) -> Ready:
        out = Ready()
        if isinstance(msg, EventualSync) and src in self.engine.peers:
            self._absorb(self.engine.on_message(now, src, msg.msg), out)
        return self._finish(now, out)

    def on_request(self, now: float, request_id: Any, request: Any) -> Ready:
        out = Ready()
        if isinstance(request, Propose):
            out.reply(request_id, self._write(now, request.data, out))
        elif isinstance(request, Read):
            out.reply(request_id, Reply(OK, value=self.sm.query(request.query), leader=self.id))
        elif isinstance(request, ChangeMember):
            detail = (
                "eventual: the replica set is the bootstrap peers (--peers); membership "
                "changes are not supported yet: nothing was changed"
            )
            out.reply(request_id, Reply(REJECTED, detail=detail))
        elif isinstance(request, TransferLeader):
            detail = "eventual: every replica accepts writes; there is no leader to move"
            out.reply(request_id, Reply(REJECTED, detail=detail))
        else:
            out.reply(request_id, Reply(REJECTED, detail=f"unknown request {request!r}"))
        return self._finish(now, out)

    def on_peer_unreachable(self, now: float, peer: NodeId) -> Ready:
        return Ready()

    # ------------------------------------------------------------ writes and merges

    def _write(self, now: float, data: bytes, out: Ready) -> Reply:
        self.applied += 1
        self.writes += 1
        result = self.sm.apply(self.applied, data)
        out.committed.append(Change(self.applied, 0, COMMAND, data))
        r = Ready()
        for key in self.sm.written(data, result):
            value = self.sm.value_of(key)
            ts = self.clock.now(int(now * 1000))
            self.engine.update(now, Mutate(key, LWWRegister, _assign(value, ts)), r)
            self._dirty.discard(key)  # (the store now holds what the state machine does)
        self._absorb(r, out)
        out.sync = True  # acknowledged: on this replica's disk first
        return Reply(OK, value=result, leader=self.id)

    def _observe(self, key: str) -> None:
        """Keep the clock past every timestamp held, so a later local write wins."""
        reg = self.engine.store.get(key)
        ts = getattr(reg, "ts", None)
        if isinstance(ts, HLCTimestamp) and ts > self.clock.last:
            self.clock.update(ts, ts.wall_ms)

    def _merge_dirty(self, out: Ready) -> None:
        """Keys the engine changed (a peer's update or an anti-entropy repair): the state
        machine takes the register's value."""
        dirty, self._dirty = self._dirty, set()
        for key in sorted(dirty):
            self._observe(key)
            value = self.engine.store.value(key)
            value = value if isinstance(value, bytes) else None
            if self.sm.value_of(key) != value:
                self.applied += 1
                self.merged += 1
                out.committed.append(
                    Change(self.applied, 0, COMMAND, self.sm.set_value(key, value))
                )

    def _absorb(self, r: Ready, out: Ready) -> None:
        out.writes.extend(Journal.of(w) for w in r.writes)
        out.sync = out.sync or r.sync
        out.messages.extend((dst, EventualSync(m)) for dst, m in r.messages)
        if r.wake_at is not None:
            self._wake = r.wake_at if self._wake is None else min(self._wake, r.wake_at)

    def _finish(self, now: float, out: Ready) -> Ready:
        self._merge_dirty(out)
        if self._wake is not None:
            out.wake(self._wake)
        return out

    # ------------------------------------------------------------ status

    def soft_state(self) -> SoftState:
        return SoftState(LEADER, self.id, 0, self.conf)

    def status(self) -> GroupStatus:
        return GroupStatus(
            id=self.id,
            protocol=PROTOCOL_NAME,
            role=LEADER,
            term=0,
            leader=self.id,
            commit=self.applied,
            applied=self.applied,
            last_index=self.applied,
            voters=list(self.conf.voters),
            consistency="eventual",
            quorum="none (each replica answers alone; the CRDT engine converges them)",
        )

    def readded(self) -> bool:
        """No votes to protect: a member that lost its state simply catches up."""
        return True


def _assign(value: bytes | None, ts: HLCTimestamp) -> Any:
    return lambda reg: reg.assign(value, ts)
