"""Causal stability and garbage collection in the sync engine (simulator)."""

from __future__ import annotations

import random
from typing import Any

import pytest

from benchmarks.sync_scenarios import cluster
from novacron_core.sim import Topology, World, check_convergence, replay_hint, sim_seeds
from novacron_core.sync.crdt import RGA, MVRegister, ORMap, ORSet, PNCounter
from novacron_core.sync.engine import Mutate, SyncConfig, SyncNode


def _view(node: SyncNode | None) -> Any:
    if node is None:
        return None
    return {k: v.value() for k, v in node.store}


def _edit(rng: random.Random) -> Mutate:
    """Text churn: paste a few words somewhere, or delete a stretch (kept near 300 chars)."""
    coin, at, size = rng.random(), rng.random(), rng.randint(1, 40)

    def mutate(doc: RGA) -> RGA:
        n = len(doc)
        if n > 300 or (n > 40 and coin < 0.45):
            k = min(size, n)
            return doc.delete(int(at * (n - k + 1)) % (n - k + 1), k)
        return doc.insert(int(at * (n + 1)) % (n + 1), "edit " * (1 + size // 10))

    return Mutate("doc", RGA, mutate)


def _churn(rng: random.Random) -> Mutate:
    """Add/remove churn over a few elements: the history grows, the values do not."""
    n = rng.randrange(8)
    pick = rng.randrange(7)
    if pick == 6:
        return _edit(rng)  # text: tombstones to collect (refused while catching up)
    if pick < 3:
        key = f"set{pick}"
        if rng.random() < 0.5:
            return Mutate(key, ORSet, lambda s: s.add(n))
        return Mutate(key, ORSet, lambda s: s.remove(n))
    if pick < 5:
        if rng.random() < 0.3:
            return Mutate("map", ORMap, lambda m: m.remove(n))
        return Mutate("map", ORMap, lambda m: m.update(n, PNCounter, lambda c: c.increment(1)))
    return Mutate("reg", MVRegister, lambda r: r.assign(n))


def _total(world: World, names: list[str]) -> int:
    return sum(sum(world.machine(n).metadata().values()) for n in names if n in world.alive())


def _run(world: World, names: list[str], until: float, every: float, rng: random.Random) -> None:
    t = world.now
    while t < until:
        t += every

        def fire() -> None:
            alive = sorted(world.alive())
            if alive:
                world.request(rng.choice(alive), _churn(rng))

        world.schedule(t, fire)
    world.run_until(until)


def _samples(
    world: World, names: list[str], until: float, rng: random.Random, step: float = 2.0
) -> list[int]:
    out = []
    while world.now + step <= until + 1e-9:
        _run(world, names, world.now + step, 0.005, rng)
        out.append(_total(world, names))
    return out


def test_metadata_stays_bounded_under_churn_grows_while_partitioned_and_shrinks_after_heal() -> (
    None
):
    world = World(7, Topology.three_regions())
    names = cluster(world, 2, SyncConfig())
    rng = random.Random(7)
    up = _samples(world, names, 12.0, rng)  # 2,400 updates, all replicas up
    # bounded: the last samples are no larger than the early ones (no growth with history)
    assert max(up[2:]) < 2 * max(up[:2]) + 200, up
    victim = names[-1]
    world.partition([{victim}, set(names) - {victim}])
    cut = _samples(world, names, 20.0, rng)  # the others must keep what the victim lacks
    assert cut[-1] > 3 * max(up), (up, cut)
    world.heal()
    healed = _samples(world, names, 28.0, rng)
    assert healed[-1] < max(up) * 2 + 200, (up, cut, healed)
    assert healed[-1] < cut[-1] / 3, (cut, healed)
    world.run_until(world.now + 5.0)  # quiesce: everything becomes stable
    result = check_convergence({n: world.machine(n) for n in names}, _view)
    assert result, result.explanation
    for n in names:
        m = world.machine(n)
        assert m.gc_keys > 0
        meta = m.metadata()
        assert meta["buffer"] == meta["inflight"] == meta["crdt_tops"] == meta["cloud"] == 0, meta
    print("metadata entries, all up:", up, "partitioned:", cut, "healed:", healed)


def _add(world: World, node: str, key: str, x: Any) -> None:
    world.request(node, Mutate(key, ORSet, lambda s: s.add(x)))


def _dots_of(world: World, node: str, key: str, x: Any) -> int:
    value = world.machine(node).store.get(key)
    assert isinstance(value, ORSet)
    return len(value.dots(x))


def test_a_remove_after_gc_removes_concurrent_adds_on_every_replica() -> None:
    """Concurrent adds of x become stable and are garbage-collected; a remove issued after that
    (on a writer, and on the replica that was partitioned or crashed meanwhile) must remove x
    on every replica, including those that collected at other times (issue 14, item 3)."""
    world = World(11, Topology.three_regions())
    names = cluster(world, 2, SyncConfig())
    world.run_until(1.0)
    *writers, victim = names
    world.partition([{n} for n in names])  # every add below is concurrent with the others
    for n in writers:
        _add(world, n, "s", "x")
    world.run_until(1.5)
    world.partition([{victim}, set(writers)])
    world.run_until(4.0)
    assert all(_dots_of(world, n, "s", "x") == len(writers) for n in writers)
    world.heal()
    world.run_until(7.0)
    assert all(world.machine(n).gc_keys for n in names)
    world.request(writers[0], Mutate("s", ORSet, lambda s: s.remove("x")))
    world.run_until(9.0)
    assert all(world.machine(n).store.value("s") == frozenset() for n in names)

    # the same with a crashed peer, and the remove issued by it once it is back
    world.crash(victim, lose_unsynced=False)
    world.partition([{n} for n in writers])
    for n in writers:
        _add(world, n, "t", "y")
    world.run_until(9.5)
    world.heal()
    world.run_until(12.0)
    world.restart(victim)
    world.run_until(16.0)
    world.request(victim, Mutate("t", ORSet, lambda s: s.remove("y")))
    world.run_until(19.0)
    result = check_convergence({n: world.machine(n) for n in names}, _view)
    assert result, result.explanation
    assert all(world.machine(n).store.value("t") == frozenset() for n in names)


def test_without_gc_the_engine_keeps_concurrent_dots() -> None:
    world = World(11, Topology.three_regions())
    names = cluster(world, 1, SyncConfig(gc=False))
    world.partition([{n} for n in names])
    for n in names:
        _add(world, n, "s", "x")
    world.run_until(0.5)
    world.heal()
    world.run_until(4.0)
    assert all(_dots_of(world, n, "s", "x") == len(names) for n in names)
    assert all(world.machine(n).metadata()["buffer"] == 0 for n in names)


@pytest.mark.parametrize("seed", sim_seeds(2, base=200))
def test_churn_converges_with_gc_under_random_fault_schedules(seed: int) -> None:
    from novacron_core.sim import apply_faults, random_faults

    world = World(seed, Topology.three_regions())
    names = cluster(world, 2, SyncConfig(ae_interval=1.0, gc_every=5))
    rng = random.Random(seed)
    apply_faults(world, random_faults(world.rng, names, 8.0, mean_gap=0.4))
    _run(world, names, 8.0, 0.005, rng)
    world.run_until(20.0)
    result = check_convergence({n: world.machine(n) for n in names}, _view)
    assert result, f"{result.explanation}\n{replay_hint(seed, 'churn_converges_with_gc')}"
    assert sum(world.machine(n).gc_keys for n in names) > 0


def _tombstones(world: World, names: list[str]) -> int:
    out = 0
    for n in names:
        if n in world.alive() and world.machine(n).store.get("doc") is not None:
            out += world.machine(n).store.get("doc").stats()["tombstones"]  # type: ignore[union-attr]
    return out


def test_rga_tombstones_are_collected_once_settled_and_a_partitioned_replica_holds_it() -> None:
    world = World(13, Topology.three_regions())
    names = cluster(world, 2, SyncConfig())
    rng = random.Random(13)

    def churn(until: float) -> list[int]:
        out = []
        while world.now < until - 1e-9:
            t = world.now
            for k in range(100):  # 100 edits a second
                world.schedule(
                    t + k * 0.01,
                    lambda: world.request(rng.choice(sorted(world.alive())), _edit(rng)),
                )
            world.run_until(t + 1.0)
            out.append(_tombstones(world, names))
        return out

    up = churn(8.0)
    victim = names[-1]
    world.partition([{victim}, set(names) - {victim}])
    cut = churn(14.0)
    world.heal()
    healed = churn(20.0)
    world.run_until(26.0)  # quiet: every delete settles
    result = check_convergence({n: world.machine(n) for n in names}, _view)
    assert result, result.explanation
    texts = {world.machine(n).store.get("doc").text() for n in names}  # type: ignore[union-attr]
    assert len(texts) == 1
    print("RGA tombstones over 6 replicas, all up:", up, "partitioned:", cut, "healed:", healed)
    assert max(up[3:]) < 3 * max(up[:3]) + 500, up  # bounded while all are up
    assert cut[-1] > 2 * max(up), (up, cut)  # the victim has not seen them: nothing goes
    assert healed[-1] < max(up) * 2 + 500, (up, healed)
    assert _tombstones(world, names) < 50  # settled: (nearly) every tombstone collected
