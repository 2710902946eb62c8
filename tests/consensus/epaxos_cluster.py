"""An EPaxos group in the deterministic simulator, with EPaxos's invariants checked after
every machine step: every replica that commits an instance commits the same command and
attributes (agreement), and every replica executes the writes of each key in the same order
(what makes the replicas' states equal). Clients are the Raft tests' retrying workload."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from novacron_core.codec import decode, encode
from novacron_core.consensus.epaxos import EPaxosConfig, EPaxosReplica, Executed, MemoryStorage
from novacron_core.consensus.epaxos.messages import COMMITTED, Command, Commit, interferes
from novacron_core.consensus.interface import OK, Propose, Read, Reply
from novacron_core.consensus.kv import PUT, KVCommand, KVQuery, KVResult, KVStore
from novacron_core.machine import Ready
from novacron_core.sim import Topology, World

FAST = EPaxosConfig(
    recover_after=0.3,
    beacon_interval=0.05,
    fetch_after=0.1,
    resend_interval=0.15,
    slow_path_after=0.15,
    snapshot_entries=40,
)


_KV = KVStore()
_WRITES: dict[bytes, tuple[str, ...]] = {}


def _keys(data: bytes) -> tuple[str, ...]:
    """What a KV command writes (its key and its session bucket)."""
    keys = _WRITES.get(data)
    if keys is None:
        keys = _WRITES[data] = _KV.command_footprint(data).writes
    return keys


class InvariantError(AssertionError):
    pass


class Invariants:
    """Agreement: one (command, seq, deps) per committed instance, whoever committed it.
    Execution order: per key, the instances that write it are executed in one order on every
    replica (each replica's sequence is a prefix of one sequence; after a restart a replica
    resumes somewhere in that sequence and must follow it from there)."""

    def __init__(self) -> None:
        self.committed: dict[tuple[str, int], tuple[Command, int, dict[str, int]]] = {}
        self.order: dict[str, list[tuple[str, int]]] = {}
        self.position: dict[tuple[str, str], int] = {}  # (replica, key) -> next index
        self.incarnation: dict[str, int] = {}
        self.executed = 0

    def watch(self, world: World) -> None:
        world.observers.append(self.after_step)
        world.ready_observers.append(self.after_ready)

    def after_step(self, world: World, name: str) -> None:
        m = world.machine(name)
        if not isinstance(m, EPaxosReplica):
            return
        inc = world.nodes[name].incarnation
        if self.incarnation.get(name) != inc:
            self.incarnation[name] = inc  # restarted: resume positions from what it executes
            for k in [k for k in self.position if k[0] == name]:
                del self.position[k]
            # a restart re-reads every committed instance it holds
            for inst in m.known_instances():
                self._agree(name, inst)

    def after_ready(self, world: World, name: str, ready: Ready) -> None:
        m = world.machine(name)
        if not isinstance(m, EPaxosReplica):
            return
        for e in ready.committed:
            if isinstance(e, Executed):
                inst = m.space.get(*e.instance)  # (gone if compacted in this same step)
                if inst is not None:
                    self._agree(name, inst)
                self._order(name, e.instance, _keys(e.data))
        # every commit a replica announces or answers with is what it holds committed
        for _, msg in ready.messages:
            if isinstance(msg, Commit):
                inst = m.space.get(msg.owner, msg.num)
                if inst is not None:
                    self._agree(name, inst)

    def _agree(self, name: str, inst: Any) -> None:
        if inst.status != COMMITTED or inst.cmd is None:
            return
        got = (inst.cmd, inst.seq, dict(inst.deps))
        want = self.committed.setdefault(inst.iid, got)
        if want != got:
            raise InvariantError(
                f"agreement: {name} committed {inst.iid} as {got}, another replica as {want}"
            )

    def _order(self, name: str, iid: tuple[str, int], keys: tuple[str, ...]) -> None:
        self.executed += 1
        for key in keys:
            seq = self.order.setdefault(key, [])
            pos = self.position.get((name, key))
            if pos is None:
                # first write of this key this incarnation executes: anywhere it comes next
                pos = seq.index(iid) if iid in seq else len(seq)
            if pos < len(seq):
                if seq[pos] != iid:
                    near = seq[max(0, pos - 3) : pos + 3]
                    raise InvariantError(
                        f"execution order: {name} executes {iid} on {key!r} where another "
                        f"replica executed {seq[pos]} (history {near})"
                    )
            else:
                seq.append(iid)
            self.position[(name, key)] = pos + 1


@dataclass
class EPaxosCluster:
    seed: int
    voters: tuple[str, ...] = ("n1", "n2", "n3")
    config: EPaxosConfig = FAST
    topology: Topology | None = None
    invariants: bool = True
    world: World = field(init=False)
    checker: Invariants = field(init=False)

    def __post_init__(self) -> None:
        self.world = World(self.seed, self.topology or Topology.uniform(3, 5.0))
        self.checker = Invariants()
        if self.invariants:
            self.checker.watch(self.world)
        regions = self.world.topology.regions
        for i, name in enumerate(self.voters):
            self.world.add_node(name, regions[i % len(regions)], self._make, MemoryStorage())

    def _make(self, node_id: str, durable: Any) -> EPaxosReplica:
        rng = random.Random(self.world.rng.getrandbits(64))
        return EPaxosReplica(node_id, durable.load(), KVStore(), rng, self.config, self.voters)

    @property
    def names(self) -> list[str]:
        return list(self.voters)

    def node(self, name: str) -> EPaxosReplica:
        m = self.world.machine(name)
        assert isinstance(m, EPaxosReplica), f"{name} is down"
        return m

    def call(self, node: str, request: Any, limit: float = 5.0) -> Reply | None:
        box: list[Reply] = []
        self.world.request(node, request, lambda now, r: box.append(r))
        self.world.run_while(lambda: not box, self.world.now + limit)
        return box[0] if box else None

    def put(
        self, key: str, value: bytes, node: str = "n1", client: str = "", seq: int = 0
    ) -> Reply | None:
        cmd = KVCommand(PUT, key, value, client=client, seq=seq)
        return self.call(node, Propose(encode(cmd)))

    def get(self, key: str, node: str = "n1") -> bytes | None:
        r = self.call(node, Read(encode(KVQuery(key))))
        assert r is not None
        assert r.status == OK, r
        assert r.value is not None
        return decode(r.value, KVResult).value

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


def states(c: EPaxosCluster) -> dict[str, dict[str, bytes]]:
    out = {}
    for n in c.world.alive():
        sm = c.node(n).sm
        assert isinstance(sm, KVStore)
        out[n] = dict(sm.data)
    return out


__all__ = ["FAST", "EPaxosCluster", "InvariantError", "Invariants", "interferes", "states"]
