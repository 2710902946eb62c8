"""A federation of region nodes in the deterministic simulator: 3 regions x 3 nodes, each
node the very composite ``novacron node`` runs (``region.machine.RegionNode``), a VM workload
per region, fault schedules, and checkers for what the federation promises:

* every VM record committed at home reaches every region (checked once healed);
* no region ever shows a record its home did not commit (checked on every store change);
* per-VM versions never go backwards at any replica (every change; a replica is one
  incarnation of a node's federation state, and after a process crash that kept its
  unsynced writes the restarted one starts where the old one was);
* every region is linearizable (the client history, ``sim/linearizability.py``);
* with synchronous replication (``sync_factor`` k), a VM write answered OK is then held by
  nodes (in memory or on their disk) of at least k other regions.
"""

from __future__ import annotations

import functools
import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from novacron_core.codec import decode, encode
from novacron_core.conflict.ipam import default_pools
from novacron_core.consensus.interface import (
    LEADER,
    NOT_LEADER,
    OK,
    ConsensusProtocol,
    GroupTuning,
    MemberAddress,
    Propose,
    Read,
    Reply,
)
from novacron_core.consensus.kv import CAS, KVCommand, KVQuery, KVResult, KVStore
from novacron_core.consensus.registry import protocol
from novacron_core.federation import vmflow
from novacron_core.federation.config import DEFAULT_SYNC, FederationPlan
from novacron_core.machine import Ready
from novacron_core.region.machine import RegionDurable, RegionNode, RegionSpec
from novacron_core.sim import History, KVModel, Op, Topology, World, check_linearizable
from novacron_core.sync.crdt.base import Crdt, decode_crdt

RAFT = protocol("raft")
TUNING = GroupTuning(election_timeout=0.3, heartbeat_interval=0.05, snapshot_entries=40)


class Violation(AssertionError):
    pass


class RecordingKV(KVStore):
    """The region's state machine, remembering every value each key took once committed
    (a member applies only committed entries): what the home region committed."""

    def __init__(self, committed: dict[str, set[bytes | None]]) -> None:
        super().__init__()
        self.committed = committed

    def apply(self, index: int, data: bytes) -> bytes | None:
        result = super().apply(index, data)
        key = decode(data, KVCommand).key
        self.committed.setdefault(key, set()).add(self.data.get(key))
        return result

    def restore(self, data: bytes) -> None:
        super().restore(data)
        for key, value in self.data.items():
            self.committed.setdefault(key, set()).add(value)


@functools.lru_cache(maxsize=4096)  # every replica checks the same values: parse each once
def version(raw: Any) -> float:
    """A record's version; a deletion (None) ends the record's history."""
    if raw is None:
        return float("inf")
    return float(json.loads(raw)["version"])


def home_of(key: str) -> str:
    """The region that wrote a copy (``vm/{id}@{region}``), else the id's region prefix."""
    return vmflow.writer_of(key) or key[len(vmflow.PREFIX) :].rsplit("-", 1)[0]


class Checker:
    """Watches every replica's store: committed values only, versions never back."""

    def __init__(self, fed: SimFederation) -> None:
        self.fed = fed
        self.watched: dict[str, int] = {}  # node -> id() of the store watched
        # node -> key -> highest version shown; kept across a restart that lost nothing
        self.shown: dict[str, dict[str, float]] = {}
        self.changes = 0

    def __call__(self, world: World, name: str, ready: Ready) -> None:
        node = world.machine(name)
        if not isinstance(node, RegionNode) or node.replica is None:
            return
        store = node.replica.store
        if self.watched.get(name) == id(store):
            return
        self.watched[name] = id(store)
        shown = self.shown.setdefault(name, {})
        for key in store.keys():  # noqa: SIM118 - iterating a Store yields pairs
            if key.startswith(vmflow.PREFIX):
                self.check(name, key, store.value(key), shown, restarted=True)
        store.subscribe(
            vmflow.PREFIX, lambda key, v: self.check(name, key, v.value(), shown, False)
        )

    def crashed(self, name: str, lost_unsynced: bool) -> None:
        self.watched.pop(name, None)
        if lost_unsynced:
            self.shown[name] = {}  # a new replica: it may show less than the lost one

    def check(
        self, name: str, key: str, raw: Any, shown: dict[str, float], restarted: bool
    ) -> None:
        self.changes += 1
        home = home_of(key)
        if raw not in self.fed.committed[home].get(vmflow.kv_key(key), set()):
            raise Violation(f"{name} shows {key} = {raw!r}, which its home {home} never committed")
        v, before = version(raw), shown.get(key, float("-inf"))
        if v < before:
            what = "after a restart that lost nothing" if restarted else "at one replica"
            raise Violation(f"{name}: {key} went back from version {before} to {v} ({what})")
        shown[key] = v


@dataclass
class Client:
    region: str
    n: int
    target: str
    seq: int = 0
    known: dict[str, bytes | None] = field(default_factory=dict)


class Workload:
    """Per region: clients creating, updating and reading their region's VM records through
    the group (retrying with their session until the outcome is known or a deadline passes),
    recorded in one history per region for the linearizability checker."""

    def __init__(
        self, fed: SimFederation, clients: int = 2, vms: int = 3, op_deadline: float = 2.0
    ) -> None:
        self.fed = fed
        self.world = fed.world
        self.rng = random.Random(self.world.rng.getrandbits(64))
        self.histories = {r: History() for r in fed.regions}
        self.vms = {r: [vmflow.PREFIX + f"{r}-{i}" for i in range(vms)] for r in fed.regions}
        self.clients = [
            Client(r, i, fed.in_region(r)[i % 3]) for r in fed.regions for i in range(clients)
        ]
        self.op_deadline = op_deadline
        self.stop_at = 0.0

    def start(self, until: float) -> None:
        self.stop_at = until
        for k, c in enumerate(self.clients):
            self.world.schedule(self.world.now + 0.01 * k, lambda c=c: self._next(c))

    def _next(self, c: Client) -> None:
        now = self.world.now
        if now >= self.stop_at:
            return
        key = self.rng.choice(self.vms[c.region])
        history = self.histories[c.region]
        if self.rng.random() < 0.3:
            op = history.invoke(c.n, "get", key, None, now)
            self._attempt(c, op, Read(encode(KVQuery(key))), now + self.op_deadline)
            return
        current = c.known.get(key)
        vm = key[len(vmflow.PREFIX) :]
        ver = 1 if current is None else int(json.loads(current)["version"]) + 1
        power = self.rng.choice(["on", "off"])
        spec = {"cpus": 1, "memory_mib": 512, "image": "alpine", "disk_gib": 10}
        new = json.dumps(
            {
                "id": vm,
                "name": vm,
                "home_region": c.region,
                "spec": spec,
                "power": power,
                "version": ver,
            }
        ).encode()
        c.seq += 1
        cmd = KVCommand(CAS, key, new, current, client=f"{c.region}-c{c.n}", seq=c.seq)
        op = history.invoke(c.n, "cas", key, (current, new), now)
        self._attempt(c, op, Propose(encode(cmd)), now + self.op_deadline)

    def _attempt(self, c: Client, op: Op, request: Any, deadline: float) -> None:
        now = self.world.now
        if now >= deadline:
            self.histories[c.region].info(op, now)
            self.world.after(self.rng.uniform(0.05, 0.15), lambda: self._next(c))
            return
        state = {"live": True}

        def on_reply(t: float, r: Reply) -> None:
            if not state["live"]:
                return
            state["live"] = False
            if r.status == OK:
                self._done(c, op, r)
                return
            if r.status == NOT_LEADER and r.leader:
                c.target = r.leader
            else:
                c.target = self.rng.choice(self.fed.in_region(c.region))
            self.world.after(0.02, lambda: self._attempt(c, op, request, deadline))

        def on_timeout() -> None:
            if state["live"]:
                state["live"] = False
                c.target = self.rng.choice(self.fed.in_region(c.region))
                self._attempt(c, op, request, deadline)

        self.world.request(c.target, request, on_reply)
        self.world.after(0.4, on_timeout)

    def _done(self, c: Client, op: Op, r: Reply) -> None:
        now = self.world.now
        res = decode(r.value, KVResult) if r.value is not None else KVResult()
        history = self.histories[c.region]
        if op.kind == "get":
            history.ok(op, res.value, now)
            c.known[op.key] = res.value
        else:
            history.ok(op, res.ok, now)
            c.known[op.key] = op.value[1] if res.ok else res.value
            if res.ok and self.fed.sync_factor:
                self.fed.check_held(op.key, op.value[1])
        self.world.after(self.rng.uniform(0.05, 0.15), lambda: self._next(c))

    def linearizable(self) -> str | None:
        for region, h in self.histories.items():
            h.close()
            res = check_linearizable(h, KVModel())
            if not res.ok and not res.exhausted:
                return f"{region} is not linearizable on {res.key}: {res.explanation}"
        return None


class SimFederation:
    def __init__(
        self,
        seed: int,
        per_region: int = 3,
        sync_factor: int = 0,
        protocol: ConsensusProtocol = RAFT,
        policies: Any = None,
    ) -> None:
        self.sync_factor = sync_factor
        self.protocol = protocol
        self.policies = policies
        self.world = World(seed, Topology.three_regions())
        self.regions = list(self.world.topology.regions)
        self.names = {f"{r}-n{i + 1}": r for r in self.regions for i in range(per_region)}
        self.committed: dict[str, dict[str, set[bytes | None]]] = {r: {} for r in self.regions}
        self.checker = Checker(self)
        self.world.ready_observers.append(self.checker)
        crash = self.world.crash

        def crash_and_note(name: str, lose_unsynced: bool = True) -> None:
            if self.world.nodes[name].alive:
                self.checker.crashed(name, lose_unsynced)
            crash(name, lose_unsynced)

        self.world.crash = crash_and_note  # type: ignore[method-assign]
        for name, region in self.names.items():
            self.world.add_node(
                name, region, self._factory(region), RegionDurable(protocol.memory_durable())
            )

    def in_region(self, region: str) -> list[str]:
        return [n for n, r in self.names.items() if r == region]

    def plan(self, name: str) -> FederationPlan:
        region = self.names[name]
        peers = {n: r for n, r in self.names.items() if n != name}
        extra = {} if self.policies is None else {"policies": self.policies}
        return FederationPlan(
            "sim",
            region,
            True,
            peers,
            DEFAULT_SYNC,
            sync_factor=self.sync_factor,
            pools=default_pools(self.regions),
            **extra,
        )

    def _factory(self, region: str) -> Callable[[str, Any], RegionNode]:
        voters = tuple(self.in_region(region))
        addresses = tuple(MemberAddress(n, f"{n}:7000", f"{n}:8080") for n in voters)

        def make(name: str, durable: Any) -> RegionNode:
            spec = RegionSpec(
                node_id=name,
                region=region,
                protocol=self.protocol,
                tuning=TUNING,
                voters=voters,
                addresses=addresses,
                seed=self.world.rng.getrandbits(64),
                state_machine=lambda: RecordingKV(self.committed[region]),
            )
            return RegionNode(spec, durable, self.plan(name))

        return make

    def check_held(self, key: str, raw: bytes) -> None:
        """Synchronous replication: ``raw`` (just acknowledged to its writer) is held by a
        node of at least ``sync_factor`` regions other than its home."""
        home, want = home_of(key), version(raw)
        key = vmflow.fed_key(key, home)
        holding = [
            r
            for r in self.regions
            if r != home and any(self._holds(n, key, want) for n in self.in_region(r))
        ]
        if len(holding) < self.sync_factor:
            raise Violation(
                f"{key} v{want} was acknowledged with sync factor {self.sync_factor}, but "
                f"only {holding or 'no region'} held it"
            )

    def _holds(self, name: str, key: str, want: float) -> bool:
        m = self.node(name)
        if m is not None and m.replica is not None:
            return version(m.replica.store.value(key)) >= want
        durable = self.world.nodes[name].durable  # a crashed node: what its disk holds
        for kind, body in durable.replica.journal:
            if kind == "u" and body.key == key and version(decode_crdt(body.delta).value()) >= want:
                return True
        return False

    def node(self, name: str) -> RegionNode | None:
        m = self.world.machine(name)
        return m if isinstance(m, RegionNode) else None

    def leader(self, region: str) -> str | None:
        best: tuple[int, str] | None = None
        for n in self.in_region(region):
            m = self.node(n)
            if m is not None and m.soft.role == LEADER and (best is None or m.soft.term > best[0]):
                best = (m.soft.term, n)
        return best[1] if best else None

    def home_state(self, region: str) -> dict[str, bytes] | None:
        """The VM records the region's leader has applied (None: no leader now)."""
        lead = self.leader(region)
        m = self.node(lead) if lead else None
        if m is None:
            return None
        return {k: v for k, v in m.kv.data.items() if k.startswith(vmflow.PREFIX)}

    def converged(self) -> bool:
        """Every replica holds exactly what each VM's home committed last (a deleted or
        never-published VM may be absent)."""
        homes: dict[str, bytes] = {}
        for r in self.regions:
            state = self.home_state(r)
            if state is None:
                return False
            homes.update({vmflow.fed_key(k, r): v for k, v in state.items()})
        for n in self.names:
            m = self.node(n)
            if m is None or m.replica is None:
                return False
            store = m.replica.store
            held = {k: v.value() for k, v in store if k.startswith(vmflow.PREFIX)}
            if {k: v for k, v in held.items() if v is not None} != homes:
                return False
        return True

    def differences(self) -> str:
        lines = []
        for r in self.regions:
            lines.append(f"{r} leader {self.leader(r)}: {sorted(self.home_state(r) or {})}")
        for n in self.names:
            m = self.node(n)
            if m is None or m.replica is None:
                lines.append(f"{n}: down or without a replica")
                continue
            store = m.replica.store
            lines.append(
                f"{n}: "
                + ", ".join(
                    f"{k}@{version(v.value())}"
                    for k, v in sorted(store)
                    if k.startswith(vmflow.PREFIX)
                )
            )
        return "\n".join(lines)


def kill_leader(fed: SimFederation, region: str, lose_unsynced: bool) -> None:
    lead = fed.leader(region)
    if lead is not None:
        fed.world.crash(lead, lose_unsynced)


def signal_crashes(fed: SimFederation) -> None:
    """A crash is seen by the victim's region peers 1 ms later (kill -9 closes its
    connections), as ``on_peer_unreachable``."""
    world, crash = fed.world, fed.world.crash

    def crash_and_signal(name: str, lose_unsynced: bool = True) -> None:
        was_alive = world.nodes[name].alive
        crash(name, lose_unsynced)
        if was_alive:
            for peer in fed.in_region(fed.names[name]):
                if peer != name:
                    world.after(
                        0.001,
                        lambda p=peer: world.inject(
                            p, lambda m: m.on_peer_unreachable(world.now, name)
                        ),
                    )

    world.crash = crash_and_signal  # type: ignore[method-assign]


__all__ = ["Crdt", "SimFederation", "Violation", "Workload", "kill_leader", "signal_crashes"]
