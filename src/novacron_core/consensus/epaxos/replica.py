"""A sans-IO EPaxos replica (Moraru, Andersen, Kaminsky, SOSP'13) as a :class:`Machine` and a
:class:`~novacron_core.consensus.interface.GroupMember`.

Every replica takes commands (there is no leader): it proposes each into its own instance
space, commits it after one round trip when no concurrent command interferes (the fast
path) or two otherwise, and executes committed instances in dependency order
(``execution``). A replica that waits too long for an instance takes it over (Explicit
Prepare, with the corrected recovery of ``recovery``); so does one that is missing an
instance the others know of (after first just asking for its commit).

This module is the Machine interface, timers (beacons, retransmission, stuck instances),
execution, snapshots and status; the rest is in ``state``, ``acceptor`` and ``leader``.

Limits (see docs/consensus.md): the replica set is fixed when the group is founded
(membership changes are refused); compaction keeps every instance some replica has not yet
executed, so a member that stays down holds back compaction on the others.
"""

from __future__ import annotations

import heapq
import random
from typing import Any

from novacron_core.consensus.epaxos.config import EPaxosConfig
from novacron_core.consensus.epaxos.conflicts import Conflicts
from novacron_core.consensus.epaxos.execution import Executor
from novacron_core.consensus.epaxos.leader import Leader
from novacron_core.consensus.epaxos.messages import (
    COMMITTED,
    PREACCEPTED,
    READ,
    WRITE,
    Accept,
    AcceptOK,
    Beacon,
    Command,
    Commit,
    Fetch,
    Nack,
    PreAccept,
    PreAcceptOK,
    Prepare,
    PrepareOK,
)
from novacron_core.consensus.epaxos.space import Inst, Space
from novacron_core.consensus.epaxos.state import Executed, Waiter
from novacron_core.consensus.epaxos.storage import Recovered, SaveSnapshot, SnapshotMeta
from novacron_core.consensus.interface import (
    COMMAND,
    ISOLATED,
    NOT_LEADER,
    OK,
    REJECTED,
    REPLICA,
    ChangeMember,
    ConfigState,
    Footprint,
    GroupStatus,
    MemberAddress,
    Propose,
    Read,
    Reply,
    SoftState,
    StateMachine,
    TransferLeader,
)
from novacron_core.machine import NodeId, Ready

MAX_REPROPOSALS = 3  # a command a recovery replaced with a no-op is proposed again this often
FETCH_BATCH = 256
GAP_SCAN = 64  # missing instances per owner looked at per scan


class EPaxosReplica(Leader):
    def __init__(
        self,
        node_id: NodeId,
        recovered: Recovered,
        sm: StateMachine,
        rng: random.Random,
        config: EPaxosConfig | None = None,
        initial_voters: tuple[str, ...] = (),
        initial_addresses: tuple[MemberAddress, ...] = (),
    ) -> None:
        self.id = node_id
        self.cfg = config or EPaxosConfig()
        self.rng = rng
        self.sm = sm
        meta = recovered.meta
        voters = meta.voters or tuple(sorted(initial_voters))
        addrs = meta.addresses or tuple(
            sorted((a for a in initial_addresses if a.node in voters), key=lambda a: a.node)
        )
        # A founding member's first start records the replica set in its first snapshot.
        self._bootstrap = not meta.voters and bool(voters)
        self.voters = voters
        self.others = tuple(v for v in voters if v != node_id)
        self.conf = ConfigState(voters, (), addrs)
        self.rank = voters.index(node_id) if node_id in voters else 255
        n = len(voters)
        # ``f``: answers from others that make a majority (and the recovery threshold);
        # the fast quorum is every replica but one (see recovery.py for why).
        self.f = n // 2
        self.fast_quorum = max(n - 1, n // 2 + 1)
        self.space = Space()
        self.conflicts = Conflicts()
        self.executor = Executor(self.space, self._apply)
        self.drives = {}
        self.waiters = {}
        self.uncommitted = set()
        # instance -> (noticed at, take it over at, ask for its commit at)
        self.stuck = {}
        self.promised_seen = {}
        self.peers_upto = {}
        self.last_heard = {}
        self.max_round = 0
        self.since_snapshot = 0
        self.abstain = False
        self.now = 0.0
        self.out = Ready()
        self.stats = {
            "proposals": 0,
            "fast_path": 0,
            "slow_path": 0,
            "recoveries": 0,
            "snapshots": 0,
            "compacted": 0,
        }
        self._exec_due = False
        self._reproposals = []
        self._reported: tuple[str, int] | None = None
        self._next_beacon = 0.0
        self._restore(recovered)

    def _restore(self, recovered: Recovered) -> None:
        meta = recovered.meta
        if recovered.data:
            self.sm.restore(recovered.data)
        ex = self.executor
        ex.upto = dict(meta.upto)
        ex.extra = {k: set(v) for k, v in meta.extra.items()}
        ex.count = meta.count
        self.snapshot_count = meta.count
        self.horizon = dict(meta.horizon)
        self.space.floor = dict(meta.horizon)
        self.space.seen = dict(meta.horizon)
        self.next_num = max(meta.next_num, meta.horizon.get(self.id, 0) + 1)
        for key in sorted(recovered.instances):
            inst = Inst.of(recovered.instances[key])
            self.space.put(inst)
            self._note_ballot(inst.bal)
            if inst.owner == self.id:
                self.next_num = max(self.next_num, inst.num + 1)
            if inst.cmd is None:
                continue
            self.conflicts.add(inst.owner, inst.num, inst.cmd, inst.seq)
            self.space.note_deps(inst.deps)
            if ex.executed(inst.owner, inst.num):
                inst.executed = True
                continue
            ex.index(inst)
            if inst.status == COMMITTED:
                ex.committed(inst)
            else:
                self.uncommitted.add(inst)
        self._exec_due = True

    # ------------------------------------------------------------ Machine

    def on_start(self, now: float) -> Ready:
        self._begin(now)
        for v in self._others():
            self.last_heard[v] = now  # give the others a heartbeat's benefit of the doubt
        if self._bootstrap:
            self._bootstrap = False
            meta = SnapshotMeta(
                next_num=self.next_num, voters=self.voters, addresses=self.conf.addresses
            )
            self.out.writes.append(SaveSnapshot(meta, self.sm.snapshot()))
            self.out.sync = True
        # Our own instances left uncommitted by a crash: nobody drives them now; take them
        # over soon (a recovery, since the answers we had are gone).
        for inst in sorted(self.uncommitted, key=_iid):
            if inst.owner == self.id:
                at = now + self.rng.random() * self.cfg.beacon_interval
                self.stuck[inst.iid] = (now, at, at)
        return self._finish()

    def on_message(self, now: float, src: NodeId, msg: Any) -> Ready:
        self._begin(now)
        if src in self.voters and src != self.id:
            self._heard(src)
            self._step(src, msg)
        return self._finish()

    def on_tick(self, now: float) -> Ready:
        self._begin(now)
        if now >= self._next_beacon:
            self._next_beacon = now + self.cfg.beacon_interval
            self._broadcast(Beacon(dict(self.executor.upto), dict(self.space.seen)))
            self._scan()
        self._drive_timers()
        return self._finish()

    def on_request(self, now: float, request_id: Any, request: Any) -> Ready:
        self._begin(now)
        if isinstance(request, Propose | Read):
            self._client(request_id, request)
        elif isinstance(request, ChangeMember):
            self.out.reply(
                request_id,
                Reply(
                    REJECTED,
                    detail="epaxos: the replica set is fixed when the group is founded; "
                    "membership changes are not supported",
                ),
            )
        elif isinstance(request, TransferLeader):
            detail = "epaxos is leaderless: there is no leader to transfer"
            self.out.reply(request_id, Reply(REJECTED, detail=detail))
        else:
            self.out.reply(request_id, Reply(REJECTED, detail=f"unknown request {request!r}"))
        return self._finish()

    def on_peer_unreachable(self, now: float, peer: NodeId) -> Ready:
        """``peer``'s connection broke (kill -9 closes it): its instances we hold uncommitted
        will not be finished by it; take them over soon, the survivors one after another in
        id order so they do not duel."""
        self._begin(now)
        survivors = [v for v in self.voters if v != peer]
        if peer in self.voters and self.id in survivors and not self.abstain:
            delay = survivors.index(self.id) * self.cfg.recover_after / 4
            delay += self.rng.random() * self.cfg.recover_after / 20
            for inst in sorted(self.uncommitted, key=_iid):
                if inst.owner == peer and inst.iid not in self.drives:
                    since = self.stuck.get(inst.iid, (now, 0.0, 0.0))[0]
                    self.stuck[inst.iid] = (since, now + delay, now + delay)
        return self._finish()

    def recover(self, now: float, owner: str, num: int) -> Ready:
        """Take instance ``(owner, num)`` over now (Explicit Prepare) instead of when it has
        been stuck for ``recover_after``: for tests that build an exact interleaving, and
        for tools."""
        self._begin(now)
        if owner in self.voters and num > self.space.floor.get(owner, 0):
            self._recover(self.space.ensure(owner, num))
        return self._finish()

    def _step(self, src: NodeId, m: Any) -> None:
        if isinstance(m, Beacon):
            self._on_beacon(src, m)
            return
        if isinstance(m, Fetch):
            self._on_fetch(src, m)
            return
        if m.owner not in self.voters or m.num <= self.space.floor.get(m.owner, 0):
            return  # not an instance of this group, or executed everywhere and compacted
        if isinstance(m, Commit):
            self._on_commit(src, m)
        elif self.abstain:
            return  # a replica that lost its state casts no votes and makes no promises
        elif isinstance(m, PreAccept):
            self._on_preaccept(src, m)
        elif isinstance(m, PreAcceptOK):
            self._on_preaccept_ok(src, m)
        elif isinstance(m, Accept):
            self._on_accept(src, m)
        elif isinstance(m, AcceptOK):
            self._on_accept_ok(src, m)
        elif isinstance(m, Prepare):
            self._on_prepare(src, m)
        elif isinstance(m, PrepareOK):
            self._on_prepare_ok(src, m)
        elif isinstance(m, Nack):
            self._on_nack(src, m)

    # ------------------------------------------------------------ clients

    def _client(self, rid: Any, request: Propose | Read) -> None:
        if self.abstain or self.id not in self.voters:
            detail = "this replica lost its state and waits to be replaced"
            if self.id not in self.voters:
                detail = "this node is not a replica of the group"
            self.out.reply(rid, Reply(NOT_LEADER, detail=detail))
            return
        if not self._quorum_contact():
            self.out.reply(rid, Reply(NOT_LEADER, detail="no quorum of replicas reachable"))
            return
        if len(self.waiters) >= self.cfg.max_pending:
            self._busy(rid, "too many commands in flight")
            return
        if isinstance(request, Propose):
            waiter = Waiter(rid, WRITE, request.data)
        else:
            waiter = Waiter(rid, READ, request.query)
        self._propose(waiter, self._command(waiter))

    def _command(self, waiter: Waiter) -> Command:
        sm: Any = self.sm
        if waiter.kind == WRITE:
            fp = (
                sm.command_footprint(waiter.data)
                if hasattr(sm, "command_footprint")
                else Footprint(write_all=True)
            )
        else:
            fp = (
                sm.query_footprint(waiter.data)
                if hasattr(sm, "query_footprint")
                else Footprint(read_all=True)
            )
        return Command.of(waiter.kind, waiter.data, fp)

    # ------------------------------------------------------------ execution

    def _apply(self, inst: Inst) -> None:
        """Called by the executor, in execution order."""
        cmd = inst.cmd
        assert cmd is not None
        self.since_snapshot += 1
        waiter = self.waiters.pop(inst.iid, None) if inst.owner == self.id else None
        if cmd.kind == WRITE:
            index = self.executor.count
            result = self.sm.apply(index, cmd.data)
            self.out.committed.append(Executed(index, 0, COMMAND, cmd.data, inst.iid))
            if waiter is not None:
                self.out.reply(waiter.rid, Reply(OK, value=result))
        elif cmd.kind == READ:
            if waiter is not None:
                self.out.reply(waiter.rid, Reply(OK, value=self.sm.query(cmd.data)))
        elif waiter is not None:
            self._reproposals.append(waiter)

    def _execute(self) -> None:
        while self._exec_due:
            self._exec_due = False
            self.executor.run()
            again, self._reproposals = self._reproposals, []
            for w in again:
                if w.attempts >= MAX_REPROPOSALS:
                    self._busy(w.rid, "a recovery replaced the command with a no-op: not applied")
                else:
                    w.attempts += 1
                    self._propose(w, self._command(w))

    # ------------------------------------------------------------ stuck instances

    def _scan(self) -> None:
        """Ask for, and eventually take over, instances this replica waits for: those its
        execution is blocked on, those it holds uncommitted, and gaps in what it knows."""
        now, cfg = self.now, self.cfg
        needed: set[tuple[str, int]] = set(self.executor.blocked_on)
        needed.update(i.iid for i in self.uncommitted if i.iid not in self.drives)
        for owner, miss in self.space.missing.items():
            needed.update((owner, n) for n in heapq.nsmallest(GAP_SCAN, miss))
        for iid in [i for i in self.stuck if i not in needed]:
            del self.stuck[iid]
        contact = self._quorum_contact()
        fetch: list[tuple[str, int]] = []
        for iid in sorted(needed):
            if iid in self.drives or iid[1] <= self.space.floor.get(iid[0], 0):
                continue
            inst = self.space.get(*iid)
            if inst is not None and inst.status == COMMITTED:
                continue
            entry = self.stuck.get(iid)
            if entry is None:
                take_over = now + cfg.recover_after * (1 + self.rng.random())
                self.stuck[iid] = (now, take_over, now + cfg.fetch_after)
                continue
            since, take_over, ask = entry
            if now >= take_over and contact and not self.abstain:
                self.stuck[iid] = (since, now + cfg.recover_after * (1 + self.rng.random()), ask)
                self._recover(inst if inst is not None else self.space.ensure(*iid))
            elif now >= ask:
                self.stuck[iid] = (since, take_over, now + 2 * cfg.fetch_after)
                fetch.append(iid)
        if fetch:
            self._broadcast(Fetch(fetch[:FETCH_BATCH]))

    # ------------------------------------------------------------ snapshots

    def _snapshot(self) -> None:
        """Snapshot the state machine, and compact every instance all replicas executed."""
        self.since_snapshot = 0
        ex = self.executor
        horizon: dict[str, int] = {}
        for o in self.voters:
            h = ex.upto.get(o, 0)
            for p in self._others():
                h = min(h, self.peers_upto.get(p, {}).get(o, 0))
            h = max(h, self.horizon.get(o, 0))
            if h:
                horizon[o] = h
        self.stats["compacted"] += self.space.compact(horizon)
        self.conflicts.forget(horizon)
        for table in (self.stuck, self.promised_seen):
            for iid in [i for i in table if i[1] <= horizon.get(i[0], 0)]:
                del table[iid]
        self.horizon = horizon
        self.snapshot_count = ex.count
        meta = SnapshotMeta(
            dict(ex.upto),
            {k: sorted(v) for k, v in ex.extra.items() if v},
            dict(horizon),
            self.next_num,
            ex.count,
            self.voters,
            self.conf.addresses,
        )
        self.out.writes.append(SaveSnapshot(meta, self.sm.snapshot()))
        self.stats["snapshots"] += 1

    # ------------------------------------------------------------ a step

    def _begin(self, now: float) -> None:
        self.now = now
        self.out = Ready()

    def _finish(self) -> Ready:
        self._execute()
        if self.since_snapshot >= self.cfg.snapshot_entries:
            self._snapshot()
        out = self.out
        role = self._role()
        if (role, self.max_round) != self._reported:
            self._reported = (role, self.max_round)
            out.soft_state = self.soft_state()
        out.wake(self._next_beacon)
        at = self._drive_wake()
        if at is not None:
            out.wake(at)
        self.out = Ready()
        return out

    # ------------------------------------------------------------ status

    def _role(self) -> str:
        return REPLICA if self._quorum_contact() and not self.abstain else ISOLATED

    def soft_state(self) -> SoftState:
        return SoftState(self._role(), None, self.max_round, self.conf)

    def status(self) -> GroupStatus:
        ex = self.executor
        return GroupStatus(
            id=self.id,
            protocol="epaxos",
            role=self._role(),
            term=self.max_round,
            leader=None,
            commit=ex.count + len(ex.pending),
            applied=ex.count,
            lag=len(ex.pending),
            last_index=sum(self.space.seen.values()),
            snapshot_index=self.snapshot_count,
            voters=list(self.voters),
            learners=[],
            elections=self.stats["recoveries"],
            leaderless=True,
        )

    def readded(self) -> bool:
        """Never: a replica that lost its state is not re-added (membership is fixed)."""
        return False

    def committed_instance(self, owner: str, num: int) -> Inst | None:
        """(For tests and tools.) The instance, if this replica holds it committed."""
        inst = self.space.get(owner, num)
        return inst if inst is not None and inst.status == COMMITTED else None

    def known_instances(self) -> list[Inst]:
        return [i for insts in self.space.by_owner.values() for i in insts.values()]

    def pending_status(self) -> dict[str, int]:
        return {
            "uncommitted": sum(1 for i in self.uncommitted if i.status >= PREACCEPTED),
            "waiting": len(self.waiters),
            "drives": len(self.drives),
        }


def _iid(inst: Inst) -> tuple[str, int]:
    return inst.iid
