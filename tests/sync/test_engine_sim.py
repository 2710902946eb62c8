"""Sync engines in the simulator: convergence under faults, restarts, anti-entropy, figures."""

from __future__ import annotations

from typing import Any

import pytest

from benchmarks.sync_scenarios import bytes_run, cluster, latency_run
from novacron_core.clocks import HLCTimestamp
from novacron_core.sim import Topology, World, check_convergence, replay_hint, sim_seeds
from novacron_core.sync.crdt import GCounter, LWWRegister, ORMap, ORSet, PNCounter
from novacron_core.sync.engine import Mutate, SyncConfig, SyncNode


def _view(node: SyncNode | None) -> Any:
    if node is None:
        return None
    return {k: v.value() for k, v in node.store}


def _random_mutation(world: World, rng: Any) -> Mutate:
    key = f"k{rng.randrange(12)}"
    n = rng.randrange(-3, 4)
    kind = int(key[1:]) % 4
    if kind == 0:
        return Mutate(key, GCounter, lambda c: c.increment(abs(n)))
    if kind == 1:
        return Mutate(key, ORSet, lambda s: s.add(n) if n >= 0 else s.remove(-n))
    if kind == 2:
        ts = HLCTimestamp(int(world.now * 1000), rng.randrange(3), f"w{rng.randrange(3)}")
        return Mutate(key, LWWRegister, lambda r: r.assign(n, ts))
    return Mutate(
        key, ORMap, lambda m: m.remove("x") if n == 0 else m.update("x", PNCounter, _inc(n))
    )


def _inc(n: int) -> Any:
    return lambda c: c.increment(n)


def _workload(world: World, names: list[str], until: float, every: float) -> None:
    t = 0.0
    while t < until:
        t += every * world.rng.random() * 2

        def fire() -> None:
            alive = world.alive()
            if alive:
                node = world.rng.choice(sorted(alive))
                world.request(node, _random_mutation(world, world.rng))

        world.schedule(t, fire)


@pytest.mark.parametrize("seed", sim_seeds(4))
def test_replicas_converge_after_loss_duplication_reordering_and_a_healed_partition(
    seed: int,
) -> None:
    world = World(seed, Topology.three_regions())
    world.net.drop_rate, world.net.dup_rate, world.net.jitter = 0.2, 0.2, 1.0
    names = cluster(world, 3, SyncConfig())
    _workload(world, names, until=6.0, every=0.01)
    world.schedule(1.0, lambda: world.partition([{"us-east1"}, {"us-west1", "europe-west1"}]))
    world.schedule(4.0, world.heal)
    world.run_until(6.0)
    world.net.drop_rate = world.net.dup_rate = 0.0
    world.run_until(12.0)
    result = check_convergence({n: world.machine(n) for n in names}, _view)
    assert result, f"{result.explanation}\n{replay_hint(seed, 'healed_partition')}"
    assert _view(world.machine(names[0]))  # the workload did write something


@pytest.mark.parametrize("seed", sim_seeds(3))
def test_crashed_nodes_that_lose_unsynced_writes_rejoin_and_converge(seed: int) -> None:
    world = World(seed, Topology.three_regions())
    world.net.drop_rate = 0.05
    names = cluster(world, 2, SyncConfig())
    _workload(world, names, until=5.0, every=0.01)
    victim = names[0]
    world.schedule(1.5, lambda: world.crash(victim, lose_unsynced=True))
    world.schedule(2.5, lambda: world.restart(victim))
    world.schedule(3.0, lambda: world.crash(names[3], lose_unsynced=True))
    world.schedule(3.2, lambda: world.restart(names[3]))
    world.run_until(12.0)
    result = check_convergence({n: world.machine(n) for n in names}, _view)
    assert result, f"{result.explanation}\n{replay_hint(seed, 'lose_unsynced')}"
    node, epoch = world.machine(victim).replica.rsplit("~", 1)
    assert (node, int(epoch) >> 16) == (victim, 2)  # a new epoch: no dot is reused


def test_anti_entropy_alone_converges_replicas() -> None:
    world = World(3, Topology.three_regions())
    no_gossip = SyncConfig(interval=10_000.0, ae_interval=0.3)
    names = cluster(world, 2, no_gossip)
    _workload(world, names, until=2.0, every=0.01)
    world.run_until(2.0)
    assert not check_convergence({n: world.machine(n) for n in names}, _view)
    world.run_until(20.0)
    result = check_convergence({n: world.machine(n) for n in names}, _view)
    assert result, result.explanation


def test_replica_restored_from_an_old_snapshot_catches_up() -> None:
    world = World(5, Topology.three_regions())
    names = cluster(world, 2, SyncConfig(snapshot_every=50, ae_interval=0.5))
    _workload(world, names, until=2.0, every=0.005)
    world.run_until(1.0)
    old = world.nodes[names[1]].durable
    frozen = (old.snapshot, list(old.journal))
    world.run_until(3.0)
    world.crash(names[1])
    old.snapshot, old.journal = frozen  # the disk went back in time
    for n in names:
        if n != names[1]:
            world.machine(n).buffer.clear()  # gossip cannot help: only anti-entropy can
    world.restart(names[1])
    world.run_until(15.0)
    result = check_convergence({n: world.machine(n) for n in names}, _view)
    assert result, result.explanation


def test_replication_lag_grows_while_partitioned_and_recovers_after_heal() -> None:
    world = World(2, Topology.three_regions())
    names = cluster(world, 1, SyncConfig())
    a, b = names[0], names[1]
    world.partition([{a}, {b}])
    _workload(world, [a], until=2.0, every=0.05)
    world.run_until(2.0)
    lag = world.machine(a).replication_lag(world.now)
    world.heal()
    world.run_until(4.0)
    after = world.machine(a).replication_lag(world.now)
    assert lag[b] > 0.5
    assert after[b] == 0.0


def test_garbage_gossip_is_ignored() -> None:
    from novacron_core.sync.messages import Gossip
    from novacron_core.sync.persist import MemoryDurable

    node = SyncNode("a", "r", {"a": "r", "b": "r"}, MemoryDurable())
    node.on_start(0.0)
    ready = node.on_message(0.1, "b", Gossip({"b": 1}, ["b~1"], [7, 1, "k", b"\x00"], True))
    ready = node.on_message(0.2, "b", Gossip({"b": -1}, [], [0, 1], False))
    assert node.store.keys() == []
    assert ready.messages == []


def test_gossip_meets_latency_and_message_targets_at_25_replicas() -> None:
    r = latency_run(seed=1, duration=6.0, partition=(2.0, 3.0))
    assert r["converged"], r
    assert r["delivered_everywhere"] == r["updates"]
    assert r["median_ms"] < 400, r
    assert r["max_ms"] < 600, r
    assert r["msgs_per_update"] < 20, r


@pytest.mark.slow
def test_nine_replicas_converge_with_bytes_close_to_the_deltas() -> None:
    r = bytes_run(seed=1, updates=20_000)
    assert r["converged"], r
    assert r["ratio_vs_keyed_deltas"] <= 1.5, r


def test_per_key_vector_clocks_flag_concurrent_writes_but_not_causal_ones() -> None:
    world = World(4, Topology.three_regions())
    names = cluster(world, 1, SyncConfig())
    a, b = names[0], names[1]
    flagged: list[tuple[str, str]] = []
    for n in names:
        world.machine(n).on_concurrent = lambda key, upd, clock, n=n: flagged.append((n, key))

    def write(node: str, key: str, v: int) -> None:
        ts = HLCTimestamp(int(world.now * 1000), 0, node)
        world.request(node, Mutate(key, LWWRegister, lambda r: r.assign(v, ts)))

    world.schedule(0.1, lambda: write(a, "seq", 1))
    world.schedule(1.0, lambda: write(b, "seq", 2))  # b has seen a's write: causal
    world.schedule(2.0, lambda: world.partition([{a}, {b}]))
    world.schedule(2.1, lambda: write(a, "conc", 1))
    world.schedule(2.2, lambda: write(b, "conc", 2))  # neither saw the other: concurrent
    world.schedule(3.0, world.heal)
    world.run_until(6.0)
    assert "seq" not in {k for _, k in flagged}
    assert {n for n, k in flagged if k == "conc"} >= {a, b}
    assert world.machine(a).store.value("conc") == world.machine(b).store.value("conc")


@pytest.mark.parametrize("seed", sim_seeds(4, base=100))
def test_replicas_converge_after_random_fault_schedules(seed: int) -> None:
    from novacron_core.sim import apply_faults, random_faults

    world = World(seed, Topology.three_regions())
    names = cluster(world, 2, SyncConfig(ae_interval=1.0))
    _workload(world, names, until=8.0, every=0.01)
    apply_faults(world, random_faults(world.rng, names, 8.0, mean_gap=0.4))
    world.run_until(20.0)
    result = check_convergence({n: world.machine(n) for n in names}, _view)
    assert result, f"{result.explanation}\n{replay_hint(seed, 'random_fault')}"
