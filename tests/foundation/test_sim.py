"""The simulator: deterministic, faithful to fault schedules, and able to catch a real bug."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from novacron_core.machine import Ready
from novacron_core.sim import (
    History,
    KVModel,
    Topology,
    World,
    apply_faults,
    check_convergence,
    check_linearizable,
    random_faults,
    replay_hint,
    sim_seeds,
)


@dataclass
class Ping:
    n: int


class Echo:
    """Bounces every Ping back with n+1 until n reaches a limit."""

    def __init__(self, name: str, durable: Any, peer: str | None, limit: int) -> None:
        self.name, self.peer, self.limit = name, peer, limit
        self.seen: list[tuple[float, int]] = []

    def on_start(self, now: float) -> Ready:
        r = Ready()
        if self.peer:
            r.send(self.peer, Ping(0))
        return r

    def on_message(self, now: float, src: str, msg: Any) -> Ready:
        self.seen.append((now, msg.n))
        r = Ready()
        if msg.n < self.limit:
            r.send(src, Ping(msg.n + 1))
        return r

    def on_tick(self, now: float) -> Ready:
        return Ready()

    def on_request(self, now: float, request_id: Any, request: Any) -> Ready:
        return Ready()


class NoDisk:
    def apply(self, writes: list[Any]) -> None:
        pass


def echo_world(seed: int, limit: int = 50) -> World:
    w = World(seed, Topology.three_regions())
    w.net.jitter = 0.5
    w.add_node("b", "europe-west1", lambda n, d: Echo(n, d, None, limit), NoDisk())
    w.add_node("a", "us-west1", lambda n, d: Echo(n, d, "b", limit), NoDisk())
    return w


def test_same_seed_gives_the_same_run_bit_for_bit() -> None:
    runs = []
    for _ in range(2):
        w = echo_world(42)
        w.net.drop_rate = 0.0
        w.net.dup_rate = 0.05
        w.run_until(30.0)
        runs.append((w.machine("a").seen, w.machine("b").seen, w.stats))
    assert runs[0] == runs[1]
    other = echo_world(43)
    other.net.dup_rate = 0.05
    other.run_until(30.0)
    assert other.machine("a").seen != runs[0][0]


def test_latency_follows_the_region_rtt_matrix() -> None:
    w = World(1, Topology.three_regions())
    w.net.jitter = 0.0
    w.add_node("b", "europe-west1", lambda n, d: Echo(n, d, None, 1), NoDisk())
    w.add_node("a", "us-west1", lambda n, d: Echo(n, d, "b", 1), NoDisk())
    w.run_until(10)
    ((arrival, _),) = w.machine("b").seen
    assert abs(arrival - 0.073) < 1e-9  # 146 ms RTT -> 73 ms one way
    ((back, _),) = w.machine("a").seen
    assert abs(back - 0.146) < 1e-9


def test_partition_drops_messages_until_healed() -> None:
    w = echo_world(5, limit=10**9)
    w.run_until(1.0)
    w.partition([["us-west1"], ["europe-west1"]])
    before = len(w.machine("b").seen)
    w.run_until(5.0)
    assert len(w.machine("b").seen) <= before + 1  # at most one message was already in flight
    assert w.stats.messages_dropped >= 1


class Counter:
    """Persists every increment; syncs only every third one."""

    def __init__(self, name: str, durable: list[int]) -> None:
        self.value = sum(durable)

    def on_start(self, now: float) -> Ready:
        return Ready(wake_at=now + 1)

    def on_tick(self, now: float) -> Ready:
        self.value += 1
        return Ready(writes=[1], sync=self.value % 3 == 0, wake_at=now + 1)

    def on_message(self, now: float, src: str, msg: Any) -> Ready:
        return Ready()

    def on_request(self, now: float, request_id: Any, request: Any) -> Ready:
        return Ready(replies=[(request_id, self.value)])


class ListDisk(list[int]):
    def apply(self, writes: list[Any]) -> None:
        self.extend(writes)


def test_crash_loses_exactly_the_unsynced_writes() -> None:
    w = World(0, Topology.three_regions())
    disk = ListDisk()
    w.add_node("c", "us-east1", Counter, disk)
    w.run_until(5.5)  # ticks at 1..5: value 5, synced through 3
    assert w.machine("c").value == 5
    w.crash("c", lose_unsynced=True)
    w.restart("c")
    assert w.machine("c").value == 3


def test_crash_without_loss_keeps_unsynced_writes() -> None:
    w = World(0, Topology.three_regions())
    w.add_node("c", "us-east1", Counter, ListDisk())
    w.run_until(5.5)
    w.crash("c", lose_unsynced=False)
    w.run_until(9.5)
    assert w.machine("c") is None  # crashed nodes get no ticks
    w.restart("c")
    assert w.machine("c").value == 5


def test_requests_to_a_crashed_node_get_no_reply() -> None:
    w = World(0, Topology.three_regions())
    w.add_node("c", "us-east1", Counter, ListDisk())
    replies: list[Any] = []
    w.crash("c")
    w.request("c", "get", lambda now, r: replies.append(r))
    w.run_until(2)
    assert replies == []
    w.restart("c")
    w.request("c", "get", lambda now, r: replies.append(r))
    w.run_until(2.5)
    assert replies == [0]


@dataclass
class Write:
    key: str
    value: int


@dataclass
class Replicate:
    key: str
    value: int
    version: int


@dataclass
class LeaderlessRegister:
    """A deliberately broken store: writes ack locally and replicate asynchronously,
    reads are served by whichever replica is asked. Eventually consistent, NOT linearizable."""

    name: str
    peers: list[str]
    data: dict[str, tuple[int, int]] = field(default_factory=dict)
    clock: int = 0

    def on_start(self, now: float) -> Ready:
        return Ready()

    def on_tick(self, now: float) -> Ready:
        return Ready()

    def on_request(self, now: float, request_id: Any, request: Any) -> Ready:
        r = Ready()
        kind, key, value = request
        if kind == "put":
            self.clock += 1
            version = self.clock * 100 + int(self.name[1:])
            self.data[key] = (version, value)
            for p in self.peers:
                r.send(p, Replicate(key, value, version))
            r.reply(request_id, None)
        else:
            r.reply(request_id, self.data.get(key, (0, None))[1])
        return r

    def on_message(self, now: float, src: str, msg: Any) -> Ready:
        if msg.version > self.data.get(msg.key, (0, None))[0]:
            self.data[msg.key] = (msg.version, msg.value)
        self.clock = max(self.clock, msg.version // 100)
        return Ready()


def run_register_workload(seed: int) -> tuple[World, History]:
    w = World(seed, Topology.three_regions())
    names = ["n1", "n2", "n3"]
    for i, name in enumerate(names):
        region = Topology.three_regions().regions[i]
        w.add_node(
            name, region, lambda n, d: LeaderlessRegister(n, [p for p in names if p != n]), NoDisk()
        )
    hist = History()
    counter = iter(range(10**9))

    def client(cid: int) -> None:
        if w.now >= 3.5:
            return
        node = w.rng.choice(names)
        kind = w.rng.choice(["put", "get"])
        value = next(counter) if kind == "put" else None
        op = hist.invoke(cid, kind, "k", value, w.now)

        def done(now: float, result: Any) -> None:
            if op.status is not None:  # the history was closed: the run is over
                return
            hist.ok(op, result, now)
            w.after(w.rng.random() * 0.05, lambda: client(cid))

        w.request(node, (kind, "k", value), done, delay=0.001)

    for cid in range(4):
        w.schedule(0.0, lambda c=cid: client(c))
    # reordering and duplicates but no loss: this store has no repair, yet must converge
    w.net.jitter, w.net.dup_rate = 1.0, 0.1
    w.run_until(4.0)
    hist.close()
    return w, hist


def test_checker_catches_the_stale_reads_of_an_eventually_consistent_store() -> None:
    caught = 0
    for seed in sim_seeds(10, base=100):
        w, hist = run_register_workload(seed)
        res = check_linearizable(hist, KVModel())
        caught += not res.ok
        # ... while replicas still converge once the network heals
        w.run_until(w.now + 5)
        conv = check_convergence({n: w.machine(n) for n in w.nodes}, lambda m: m.data)
        assert conv, f"{conv.explanation}\n{replay_hint(seed, 'stale_reads')}"
    assert caught >= 5, "the checker should reject most runs of a non-linearizable store"


def test_random_fault_schedules_end_healed_with_everyone_up() -> None:
    for seed in range(50):
        w = echo_world(seed, limit=10**9)
        faults = random_faults(w.rng, ["a", "b"], 5.0, max_down=1)
        apply_faults(w, faults)
        w.run_until(5.0)
        assert not w.net.groups
        assert not w.net.blocked
        assert w.net.drop_rate == 0.0
        assert all(s.alive for s in w.nodes.values())


def test_uniform_topology_for_gossip_style_tests() -> None:
    t = Topology.uniform(5, one_way_ms=100)
    assert t.one_way_s("r0", "r4") == 0.1
    assert t.one_way_s("r2", "r2") == 0.0005
