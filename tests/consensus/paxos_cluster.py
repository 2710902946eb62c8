"""A Multi-Paxos group in the deterministic simulator, with Paxos invariants checked after
every machine step. It offers what ``cluster.Workload`` drives (``world``, ``names``,
``voters``), so Raft's retrying KV clients and fault schedules run against it unchanged."""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace
from typing import Any

from novacron_core.codec import decode, encode
from novacron_core.consensus.interface import LEADER, OK, Propose, Read, Reply
from novacron_core.consensus.kv import PUT, KVCommand, KVQuery, KVResult, KVStore
from novacron_core.consensus.paxos import MemoryStorage, PaxosConfig, PaxosNode
from novacron_core.consensus.paxos.messages import Ballot
from novacron_core.consensus.quorum import MAJORITY, QuorumStrategy
from novacron_core.sim import Topology, World
from tests.consensus.cluster import InvariantError, address_of, change_member

FAST = PaxosConfig(election_timeout=0.3, heartbeat_interval=0.05, snapshot_entries=40)


class PaxosInvariants:
    """Checked after every step of every member:

    * agreement: no two members ever hold different values chosen for one slot (the first
      one seen chosen anywhere is remembered, also past snapshots);
    * promises are durable: a member's promised ballot never goes down, across crashes
      that lose unsynced writes included;
    * one leader per ballot: a ballot carries its proposer's id, and only it leads it.
    """

    def __init__(self) -> None:
        self.chosen: dict[int, tuple[int, bytes]] = {}
        self.checked: dict[str, int] = {}
        self.promised: dict[str, Ballot] = {}
        self.leaders: dict[Ballot, str] = {}

    def __call__(self, world: World, name: str) -> None:
        m = world.machine(name)
        if not isinstance(m, PaxosNode):
            return
        lo = max(self.checked.get(name, 0), m.snap.index)
        if lo > m.commit:  # restarted with less: check from what it holds
            lo = m.snap.index
        for i in range(lo + 1, m.commit + 1):
            s = m.log[i]
            got = self.chosen.setdefault(i, (s.kind, s.data))
            if got != (s.kind, s.data):
                raise InvariantError(f"agreement: {name} chose {s} at {i}, others {got}")
        self.checked[name] = m.commit
        before = self.promised.get(name)
        if before is not None and m.promised < before:
            raise InvariantError(f"{name}'s promise went back from {before} to {m.promised}")
        self.promised[name] = m.promised
        if m.role == LEADER:
            if m.ballot.node != name:
                raise InvariantError(f"{name} leads a ballot of {m.ballot.node}: {m.ballot}")
            other = self.leaders.setdefault(m.ballot, name)
            if other != name:
                raise InvariantError(f"{other} and {name} both lead {m.ballot}")


@dataclass
class PaxosCluster:
    seed: int
    voters: tuple[str, ...] = ("n1", "n2", "n3")
    spares: tuple[str, ...] = ()
    config: PaxosConfig = FAST
    topology: Topology | None = None
    invariants: bool = True
    quorum: QuorumStrategy = MAJORITY
    world: World = field(init=False)
    checker: PaxosInvariants = field(init=False)

    def __post_init__(self) -> None:
        self.world = World(self.seed, self.topology or Topology.uniform(3, 5.0))
        self.checker = PaxosInvariants()
        if self.invariants:
            self.world.observers.append(self.checker)
        regions = self.world.topology.regions
        for i, name in enumerate(self.voters + self.spares):
            initial = self.voters if name in self.voters else ()
            self.world.add_node(
                name, regions[i % len(regions)], self._factory(initial), MemoryStorage()
            )

    def _factory(self, initial: tuple[str, ...]) -> Any:
        cfg = replace(self.config, quorum=self.quorum)

        def make(node_id: str, durable: Any) -> PaxosNode:
            rng = random.Random(self.world.rng.getrandbits(64))
            addrs = tuple(address_of(n) for n in initial)
            return PaxosNode(node_id, durable.load(), KVStore(), rng, cfg, initial, addrs)

        return make

    @property
    def names(self) -> list[str]:
        return list(self.voters + self.spares)

    def node(self, name: str) -> PaxosNode:
        m = self.world.machine(name)
        assert isinstance(m, PaxosNode), f"{name} is down"
        return m

    def leader(self) -> str | None:
        """The live leader of the highest ballot whose barrier is chosen, if any."""
        best: tuple[Ballot, str] | None = None
        for n in self.world.alive():
            m = self.world.machine(n)
            if (
                m.role == LEADER
                and m.commit >= m.term_start
                and (best is None or m.ballot > best[0])
            ):
                best = (m.ballot, n)
        return best[1] if best else None

    def wait_leader(self, limit: float = 10.0) -> str:
        self.world.run_while(lambda: self.leader() is None, self.world.now + limit)
        lead = self.leader()
        assert lead is not None, "no leader elected"
        return lead

    def call(self, node: str, request: Any, limit: float = 5.0) -> Reply | None:
        box: list[Reply] = []
        self.world.request(node, request, lambda now, r: box.append(r))
        self.world.run_while(lambda: not box, self.world.now + limit)
        return box[0] if box else None

    def put(self, key: str, value: bytes, client: str = "", seq: int = 0) -> Reply | None:
        lead = self.wait_leader()
        return self.call(lead, Propose(encode(KVCommand(PUT, key, value, client=client, seq=seq))))

    def get(self, key: str) -> bytes | None:
        r = self.call(self.wait_leader(), Read(encode(KVQuery(key))))
        assert r is not None
        assert r.status == OK, r
        assert r.value is not None
        return decode(r.value, KVResult).value

    def change(self, action: str, node: str) -> Reply | None:
        return self.call(self.wait_leader(), change_member(action, node))

    def signal_unreachable(self, observer: str, peer: str) -> None:
        self.world.inject(observer, lambda m: m.on_peer_unreachable(self.world.now, peer))

    def signal_crashes(self, after: float = 0.001) -> None:
        """From now on a crash is seen by every live node ``after`` seconds later."""
        world, crash = self.world, self.world.crash

        def crash_and_signal(name: str, lose_unsynced: bool = True) -> None:
            was_alive = world.nodes[name].alive
            crash(name, lose_unsynced)
            if was_alive:
                for n in world.alive():
                    world.after(after, lambda n=n: self.signal_unreachable(n, name))

        world.crash = crash_and_signal  # type: ignore[method-assign]
