"""A Raft group in the deterministic simulator, with Raft-paper invariants checked after
every machine step and a retrying KV client workload recorded for the linearizability
checker."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from novacron_core.codec import decode, encode
from novacron_core.consensus.kv import CAS, DELETE, PUT, KVCommand, KVQuery, KVResult, KVStore
from novacron_core.consensus.raft import (
    LEADER,
    NOT_LEADER,
    OK,
    ChangeMember,
    MemberAddress,
    MemoryStorage,
    Propose,
    RaftConfig,
    RaftNode,
    Read,
    Reply,
)
from novacron_core.sim import History, Op, Topology, World

# Chunks small enough that most snapshots in the simulation travel in several pieces.
FAST = RaftConfig(
    election_timeout=0.3,
    heartbeat_interval=0.05,
    snapshot_entries=40,
    snapshot_chunk_bytes=48,
    snapshot_window=3,
)


class InvariantError(AssertionError):
    pass


def address_of(node: str) -> MemberAddress:
    """The address every simulated member is added with (and bootstraps with)."""
    return MemberAddress(node, f"{node}.peers:7000", f"{node}.peers:8080")


class Invariants:
    """Election safety, log matching, leader completeness and state-machine safety."""

    def __init__(self) -> None:
        self.leaders: dict[int, str] = {}
        self.committed: dict[int, tuple[int, int, bytes]] = {}  # index -> (term, kind, data)
        self.seen: dict[tuple[int, int], tuple[int, bytes, int | None]] = {}
        self.checked: dict[str, tuple[int, int | None]] = {}
        self.commit_seen: dict[str, int] = {}
        self.was_leader: dict[str, int] = {}

    def __call__(self, world: World, name: str) -> None:
        m = world.machine(name)
        if not isinstance(m, RaftNode):
            return
        self._election_safety(m)
        self._log_matching(m)
        self._state_machine_safety(m)
        self._addresses(m)

    def _addresses(self, m: RaftNode) -> None:
        """Every member of every config a node holds (latest, applied, snapshot) comes with
        the address it was added with, and a removed member's address is gone."""
        for what, conf in (
            ("config", m.conf),
            ("applied config", m.applied_conf),
            ("snapshot config", m.log.snap.config),
        ):
            if not conf.voters:
                continue  # a joiner that has not received any configuration yet
            got = {a.node: a for a in conf.addresses}
            want = {n: address_of(n) for n in conf.members()}
            if got != want:
                raise InvariantError(f"addresses: {m.id}'s {what} {conf} should carry {want}")

    def _election_safety(self, m: RaftNode) -> None:
        if m.role != LEADER:
            self.was_leader.pop(m.id, None)
            return
        other = self.leaders.setdefault(m.term, m.id)
        if other != m.id:
            raise InvariantError(f"election safety: {other} and {m.id} lead term {m.term}")
        if self.was_leader.get(m.id) != m.term:
            self.was_leader[m.id] = m.term
            for i, (t, _, _) in self.committed.items():
                if i > m.log.snap.index and m.log.term(i) != t:
                    raise InvariantError(
                        f"leader completeness: {m.id} leads term {m.term} without committed "
                        f"entry {i} (term {t})"
                    )

    def _log_matching(self, m: RaftNode) -> None:
        log = m.log
        start, term = self.checked.get(m.id, (log.snap.index, None))
        if start > log.last_index or log.term(start) != term:
            start = log.snap.index
        for i in range(max(start, log.snap.index) + 1, log.last_index + 1):
            e = log.entry(i)
            key = (i, e.term)
            sig = (e.kind, e.data, log.term(i - 1))
            prev = self.seen.setdefault(key, sig)
            if prev != sig and (prev[2] is not None and sig[2] is not None):
                raise InvariantError(f"log matching: {m.id} differs at index {i} term {e.term}")
        self.checked[m.id] = (log.last_index, log.term(log.last_index))

    def _state_machine_safety(self, m: RaftNode) -> None:
        lo = max(self.commit_seen.get(m.id, 0), m.log.snap.index)
        for i in range(lo + 1, m.commit + 1):
            e = m.log.entry(i)
            got = self.committed.setdefault(i, (e.term, e.kind, e.data))
            if got != (e.term, e.kind, e.data):
                raise InvariantError(f"state machine safety: {m.id} commits a different entry {i}")
        self.commit_seen[m.id] = m.commit


@dataclass
class SimCluster:
    seed: int
    voters: tuple[str, ...] = ("n1", "n2", "n3")
    spares: tuple[str, ...] = ()
    config: RaftConfig = FAST
    topology: Topology | None = None
    invariants: bool = True
    world: World = field(init=False)
    checker: Invariants = field(init=False)

    def __post_init__(self) -> None:
        self.world = World(self.seed, self.topology or Topology.uniform(3, 5.0))
        self.checker = Invariants()
        if self.invariants:
            self.world.observers.append(self.checker)
        regions = self.world.topology.regions
        for i, name in enumerate(self.voters + self.spares):
            initial = self.voters if name in self.voters else ()
            self.world.add_node(
                name, regions[i % len(regions)], self._factory(initial), MemoryStorage()
            )

    def _factory(self, initial: tuple[str, ...]) -> Any:
        def make(node_id: str, durable: Any) -> RaftNode:
            rng = random.Random(self.world.rng.getrandbits(64))
            addrs = tuple(address_of(n) for n in initial)
            return RaftNode(node_id, durable.load(), KVStore(), rng, self.config, initial, addrs)

        return make

    @property
    def names(self) -> list[str]:
        return list(self.voters + self.spares)

    def node(self, name: str) -> RaftNode:
        m = self.world.machine(name)
        assert isinstance(m, RaftNode), f"{name} is down"
        return m

    def leader(self) -> str | None:
        """The live leader of the highest term, if any."""
        best: tuple[int, str] | None = None
        for n in self.world.alive():
            m = self.world.machine(n)
            if m.role == LEADER and (best is None or m.term > best[0]):
                best = (m.term, n)
        return best[1] if best else None

    def wait_leader(self, limit: float = 10.0) -> str:
        self.world.run_while(lambda: self.leader() is None, self.world.now + limit)
        lead = self.leader()
        assert lead is not None, "no leader elected"
        return lead

    def call(self, node: str, request: Any, limit: float = 5.0) -> Reply | None:
        """Send one request and run the world until it is answered (None: no answer)."""
        box: list[Reply] = []
        self.world.request(node, request, lambda now, r: box.append(r))
        self.world.run_while(lambda: not box, self.world.now + limit)
        return box[0] if box else None

    def put(self, key: str, value: bytes, client: str = "", seq: int = 0) -> Reply | None:
        lead = self.wait_leader()
        return self.call(lead, Propose(encode(KVCommand(PUT, key, value, client=client, seq=seq))))

    def get(self, key: str) -> bytes | None:
        lead = self.wait_leader()
        r = self.call(lead, Read(encode(KVQuery(key))))
        assert r is not None
        assert r.status == OK, r
        assert r.value is not None
        return decode(r.value, KVResult).value

    def signal_unreachable(self, observer: str, peer: str) -> None:
        """What the runtime's transport does when ``observer``'s connection to ``peer`` is
        refused or closed: feed ``on_peer_unreachable`` and carry out its Ready like any
        other input."""
        self.world.inject(observer, lambda m: m.on_peer_unreachable(self.world.now, peer))

    def signal_crashes(self, after: float = 0.001) -> None:
        """From now on a crash is seen by every live node ``after`` seconds later, as a
        kill -9 closes the victim's TCP connections."""
        world, crash = self.world, self.world.crash

        def crash_and_signal(name: str, lose_unsynced: bool = True) -> None:
            was_alive = world.nodes[name].alive
            crash(name, lose_unsynced)
            if was_alive:
                for n in world.alive():
                    world.after(after, lambda n=n: self.signal_unreachable(n, name))

        world.crash = crash_and_signal  # type: ignore[method-assign]

    def change(self, action: str, node: str) -> Reply | None:
        return self.call(self.wait_leader(), change_member(action, node))


def change_member(action: str, node: str) -> ChangeMember:
    """A membership change as the admin API sends it: adds carry the node's addresses."""
    if action in ("add_learner", "add_voter"):
        a = address_of(node)
        return ChangeMember(action, node, a.peer, a.http)
    return ChangeMember(action, node)


class Workload:
    """Sequential clients with sessions that retry until an op's outcome is known or its
    deadline passes, recording every op in a :class:`History`."""

    def __init__(
        self,
        cluster: SimCluster,
        clients: int = 4,
        keys: int = 3,
        op_deadline: float = 2.0,
        attempt_timeout: float = 0.4,
    ) -> None:
        self.c = cluster
        self.world = cluster.world
        self.rng = random.Random(self.world.rng.getrandbits(64))
        self.history = History()
        self.keys = [f"k{i}" for i in range(keys)]
        self.op_deadline = op_deadline
        self.attempt_timeout = attempt_timeout
        self.stop_at = 0.0
        self.guess: dict[int, str] = {}
        self.seq: dict[int, int] = {}
        self.written: dict[str, list[bytes]] = {k: [] for k in self.keys}
        self.counter = 0
        self.clients = clients

    def start(self, until: float) -> None:
        self.stop_at = until
        for c in range(self.clients):
            self.seq[c] = 0
            self.guess[c] = self.c.names[c % len(self.c.voters)]
            self.world.schedule(self.world.now + 0.01 * c, lambda c=c: self._next(c))

    def _next(self, c: int) -> None:
        now = self.world.now
        if now >= self.stop_at:
            return
        key = self.rng.choice(self.keys)
        kind = self.rng.choice(["put", "put", "get", "get", "cas", "delete"])
        self.counter += 1
        value = f"v{self.counter}".encode()
        request: Any
        if kind == "get":
            op = self.history.invoke(c, "get", key, None, now)
            request = Read(encode(KVQuery(key)))
        else:
            self.seq[c] += 1
            seq = self.seq[c]
            if kind == "put":
                cmd = KVCommand(PUT, key, value, client=f"c{c}", seq=seq)
                op = self.history.invoke(c, "put", key, value, now)
            elif kind == "delete":
                cmd = KVCommand(DELETE, key, client=f"c{c}", seq=seq)
                op = self.history.invoke(c, "delete", key, None, now)
            else:
                choices: list[bytes | None] = [None, *self.written[key][-3:]]
                expected = self.rng.choice(choices)
                cmd = KVCommand(CAS, key, value, expected, client=f"c{c}", seq=seq)
                op = self.history.invoke(c, "cas", key, (expected, value), now)
            if kind != "delete":
                self.written[key].append(value)
            request = Propose(encode(cmd))
        self._attempt(c, op, request, now + self.op_deadline, 0)

    def _attempt(self, c: int, op: Op, request: Any, deadline: float, n: int) -> None:
        now = self.world.now
        if now >= deadline:
            self._done(c, op, None)
            return
        target = self.guess[c]
        state = {"live": True}

        def on_reply(t: float, r: Reply) -> None:
            if not state["live"]:
                return
            state["live"] = False
            if r.status == OK:
                self._done(c, op, r)
                return
            if r.status == NOT_LEADER and r.leader:
                self.guess[c] = r.leader
            else:
                self.guess[c] = self.rng.choice(self.c.names)
            self.world.after(0.02, lambda: self._attempt(c, op, request, deadline, n + 1))

        def on_timeout() -> None:
            if not state["live"]:
                return
            state["live"] = False
            self.guess[c] = self.rng.choice(self.c.names)
            self._attempt(c, op, request, deadline, n + 1)

        self.world.request(target, request, on_reply)
        self.world.after(self.attempt_timeout, on_timeout)

    def _done(self, c: int, op: Op, r: Reply | None) -> None:
        now = self.world.now
        if r is None:
            self.history.info(op, now)
        else:
            res = decode(r.value, KVResult) if r.value is not None else KVResult()
            if op.kind == "get":
                self.history.ok(op, res.value, now)
            elif op.kind == "cas":
                self.history.ok(op, res.ok, now)
            else:
                self.history.ok(op, None, now)
        self.world.after(0.005, lambda: self._next(c))
