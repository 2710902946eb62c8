"""The eventual protocol under the deterministic simulator, with Raft's fault schedules
(``random_faults``: partitions, crashes with and without unsynced-write loss, drops,
duplicates, reordering). Its histories are not linearizable by design, so they are checked
for what it does promise:

* convergence: once healed, every replica holds the same state (its KV store and the CRDT
  engine's registers agree with each other and across replicas);
* validity: every value a replica ends with was written by some client (nothing invented,
  no value resurrected from another key);
* durability: a write-once key acknowledged by any replica (fsynced there before the
  answer) ends up at every replica, through crashes that lose unsynced writes;
* every reply says it is eventual.

``NOVACRON_SEED=N`` replays one schedule; ``NOVACRON_SIM_SCHEDULES=K`` sweeps K."""

from __future__ import annotations

import os
import random
from dataclasses import dataclass, field
from typing import Any

import pytest

from novacron_core.codec import decode, encode
from novacron_core.consensus.eventual import PROTOCOL, EventualDurable, EventualMember
from novacron_core.consensus.interface import (
    OK,
    REJECTED,
    ChangeMember,
    GroupTuning,
    MemberAddress,
    Propose,
    Read,
    Reply,
)
from novacron_core.consensus.kv import CAS, DELETE, PUT, KVCommand, KVQuery, KVResult, KVStore
from novacron_core.sim import (
    History,
    Topology,
    World,
    apply_faults,
    check_convergence,
    random_faults,
    replay_hint,
    sim_seeds,
)

TUNING = GroupTuning(election_timeout=0.3, heartbeat_interval=0.05)
NAMES = ("n1", "n2", "n3")


@dataclass
class EventualCluster:
    seed: int
    names: tuple[str, ...] = NAMES
    world: World = field(init=False)

    def __post_init__(self) -> None:
        self.world = World(self.seed, Topology.uniform(3, 5.0))
        regions = self.world.topology.regions
        for i, name in enumerate(self.names):
            self.world.add_node(name, regions[i % len(regions)], self._make, EventualDurable())

    def _make(self, node_id: str, durable: Any) -> EventualMember:
        rng = random.Random(self.world.rng.getrandbits(64))
        addrs = tuple(MemberAddress(n, f"{n}:7000", f"{n}:8080") for n in self.names)
        member = PROTOCOL.member(node_id, durable, KVStore(), rng, TUNING, self.names, addrs)
        assert isinstance(member, EventualMember)
        return member

    def node(self, name: str) -> EventualMember:
        m = self.world.machine(name)
        assert isinstance(m, EventualMember), f"{name} is down"
        return m

    def kv(self, name: str) -> dict[str, bytes]:
        sm = self.node(name).sm
        assert isinstance(sm, KVStore)
        return sm.data

    def registers(self, name: str) -> dict[str, bytes]:
        store = self.node(name).engine.store
        return {k: v for k, _ in store if isinstance(v := store.value(k), bytes)}

    def converged(self) -> bool:
        if len(self.world.alive()) < len(self.names):
            return False
        first = self.kv(self.names[0])
        return all(self.kv(n) == first and self.registers(n) == first for n in self.names)


class Clients:
    """Sequential clients, each sticking to one replica until it stops answering."""

    def __init__(self, c: EventualCluster, clients: int = 4, timeout: float = 0.4) -> None:
        self.c, self.world = c, c.world
        self.rng = random.Random(self.world.rng.getrandbits(64))
        self.history = History()
        self.timeout = timeout
        self.home = {i: c.names[i % len(c.names)] for i in range(clients)}
        self.written: dict[str, set[bytes]] = {}
        self.once_acked: dict[str, bytes] = {}
        self.replies: list[Reply] = []
        self.counter = 0
        self.stop_at = 0.0

    def start(self, until: float) -> None:
        self.stop_at = until
        for i in self.home:
            self.world.schedule(0.01 * i, lambda i=i: self._next(i))

    def _next(self, i: int) -> None:
        now = self.world.now
        if now >= self.stop_at:
            return
        self.counter += 1
        value = f"v{self.counter}".encode()
        kind = self.rng.choice(["put", "put", "get", "cas", "delete", "once"])
        key = f"k{self.rng.randrange(3)}"
        request: Any
        if kind == "get":
            request = Read(encode(KVQuery(key)))
        elif kind == "put":
            request = Propose(encode(KVCommand(PUT, key, value)))
        elif kind == "delete":
            request = Propose(encode(KVCommand(DELETE, key)))
        elif kind == "cas":
            expected = self.rng.choice([None, *sorted(self.written.get(key, set()))[-2:]])
            request = Propose(encode(KVCommand(CAS, key, value, expected)))
        else:
            key = f"once/{self.counter}"
            request = Propose(encode(KVCommand(PUT, key, value)))
        if kind in ("put", "cas", "once"):
            self.written.setdefault(key, set()).add(value)
        op = self.history.invoke(i, kind, key, value, now)
        state = {"live": True}

        def on_reply(t: float, r: Reply) -> None:
            if not state["live"]:
                return
            state["live"] = False
            self.replies.append(r)
            res = decode(r.value, KVResult) if r.value is not None else KVResult()
            self.history.ok(op, res.value if kind == "get" else res.ok, t)
            if kind == "once":
                self.once_acked[key] = value
            self.world.after(0.02, lambda: self._next(i))  # (some think time)

        def on_timeout() -> None:
            if state["live"]:
                state["live"] = False
                self.history.info(op, self.world.now)
                self.home[i] = self.rng.choice(self.c.names)  # try another replica
                self._next(i)

        self.world.request(self.home[i], request, on_reply)
        self.world.after(self.timeout, on_timeout)


def run_schedule(seed: int) -> str | None:
    c = EventualCluster(seed)
    clients = Clients(c)
    faults_end = 3.0
    clients.start(until=faults_end + 1.0)
    apply_faults(c.world, random_faults(c.world.rng, c.names, faults_end, mean_gap=0.3))
    w = c.world
    w.run_until(faults_end + 1.2)
    if not w.run_while(lambda: not c.converged(), faults_end + 15.0):
        states = {n: c.kv(n) for n in w.alive()}
        return f"not converged 12 s after healing:\n{check_convergence(states).explanation}"
    final = c.kv(c.names[0])
    for key, value in final.items():
        if value not in clients.written.get(key, set()):
            return f"{key} = {value!r}, which no client wrote to it"
    for key, value in clients.once_acked.items():
        if final.get(key) != value:
            return f"acknowledged write-once {key} = {value!r} lost: {final.get(key)!r}"
    if clients.history.counts().get("ok", 0) < 50:
        return f"too few operations answered to check anything: {clients.history.counts()}"
    return None


def _sweep(seeds: list[int], test: str) -> None:
    failures = []
    for seed in seeds:
        err = run_schedule(seed)
        if err is not None:
            failures.append(f"seed {seed}: {err}\n  {replay_hint(seed, test)}")
    assert not failures, "\n".join(failures[:5])


def test_eventual_replicas_converge_under_fault_schedules() -> None:
    _sweep(sim_seeds(100, base=50_000), "test_eventual_replicas_converge")


def test_a_write_is_answered_by_its_replica_alone_and_reaches_the_others() -> None:
    c = EventualCluster(seed=1)
    c.world.run_for(0.1)
    c.world.partition([["n1"]])  # n1 alone: still answers (no quorum needed)
    box: list[Reply] = []
    c.world.request(
        "n1", Propose(encode(KVCommand(PUT, "k", b"alone"))), lambda t, r: box.append(r)
    )
    c.world.run_for(0.01)
    assert [r.status for r in box] == [OK]
    assert c.kv("n1") == {"k": b"alone"}
    assert "k" not in c.kv("n2")  # not yet: cut off
    assert c.node("n1").status().consistency == "eventual"
    c.world.heal()
    c.world.run_while(lambda: not c.converged(), c.world.now + 5.0)
    assert c.kv("n2") == c.kv("n3") == {"k": b"alone"}
    # A later write elsewhere wins everywhere (its clock has seen the first one's).
    c.world.request("n3", Propose(encode(KVCommand(PUT, "k", b"later"))))
    c.world.run_while(lambda: c.kv("n1").get("k") != b"later", c.world.now + 5.0)
    assert c.converged()
    # Membership and leadership requests are refused, saying why, not ignored.
    refusals: list[Reply] = []
    c.world.request("n2", ChangeMember("remove", "n3"), lambda t, r: refusals.append(r))
    c.world.run_for(0.01)
    assert refusals[0].status == REJECTED
    assert "not supported" in refusals[0].detail


def test_a_restarted_replica_keeps_what_it_acknowledged() -> None:
    c = EventualCluster(seed=2)
    c.world.run_for(0.1)
    c.world.partition([["n2"]])
    c.world.request("n2", Propose(encode(KVCommand(PUT, "mine", b"1"))))
    c.world.run_for(0.01)
    c.world.crash("n2", lose_unsynced=True)  # the acknowledged write was fsynced first
    c.world.restart("n2")
    assert c.kv("n2") == {"mine": b"1"}
    c.world.heal()
    c.world.run_while(lambda: not c.converged(), c.world.now + 5.0)
    assert c.kv("n1") == {"mine": b"1"}


@pytest.mark.soak
@pytest.mark.skipif(not os.environ.get("NOVACRON_SOAK"), reason="make soak only")
def test_soak_eventual_fault_schedules() -> None:
    count = int(os.environ.get("NOVACRON_SOAK_SCHEDULES", "20000"))
    _sweep(sim_seeds(count // 4, base=150_000), "test_soak_eventual")
