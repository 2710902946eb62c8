"""EPaxos under the deterministic simulator: the same random fault schedules as Raft
(partitions, one-way blocks, crashes with and without unsynced-write loss, drops,
duplicates, reordering), plus command leaders killed mid-instance so that the survivors
must recover their instances. Every step is checked for agreement and per-key execution
order (``epaxos_cluster.Invariants``), every history for linearizability, and the group
must commit again once healed. ``NOVACRON_SEED=N`` replays one schedule."""

from __future__ import annotations

import functools
import multiprocessing
import os
import random
from concurrent.futures import ProcessPoolExecutor

import pytest

from novacron_core.consensus.interface import OK
from novacron_core.sim import (
    KVModel,
    apply_faults,
    check_linearizable,
    random_faults,
    replay_hint,
    sim_seeds,
)
from tests.consensus.cluster import Workload
from tests.consensus.epaxos_cluster import EPaxosCluster, states

FAULTS_END = 2.5
# The checker may give up on a history (neither proven nor refuted); a few such schedules are
# tolerated, more would mean the sweep no longer checks what it claims to.
EXHAUSTED = "linearizability search budget exhausted"
MAX_EXHAUSTED = 0.02
TAIL = 0.4  # the workload goes on this long after the last fault


def run_schedule(seed: int, kill_leaders: bool = False, five: bool = False) -> str | None:
    """One fault schedule; returns a failure description or None. ``kill_leaders``: besides
    the random faults, every ~0.4 s the replica that most recently proposed is killed right
    after it sent its PreAccepts (its instances are then in flight) and the others are told
    at once, as a closed connection tells them."""
    voters = ("n1", "n2", "n3", "n4", "n5") if five else ("n1", "n2", "n3")
    c = EPaxosCluster(seed=seed, voters=voters)
    w = Workload(c, clients=4, keys=3)  # type: ignore[arg-type]
    w.start(until=FAULTS_END + TAIL)
    if kill_leaders:
        c.signal_crashes()
        _kill_command_leaders(c, until=FAULTS_END)
    apply_faults(c.world, random_faults(c.world.rng, c.names, FAULTS_END, mean_gap=0.3))
    try:
        c.world.run_until(FAULTS_END + 2.0)
        reply = c.put("liveness", b"x", node=c.world.alive()[0])
        if reply is None or reply.status != OK:
            return f"no write committed after healing: {reply}"
        c.world.run_for(1.0)
        final = states(c)
        if len({repr(sorted(s.items())) for s in final.values()}) != 1:
            return f"replicas differ once quiet: {final}"
    except AssertionError as e:
        return f"{type(e).__name__}: {e}"
    w.history.close()
    res = check_linearizable(w.history, KVModel())
    if res.exhausted:
        return f"{EXHAUSTED} on key {res.key}"
    if not res.ok:
        return f"not linearizable on key {res.key}: {res.explanation}"
    return None


def _kill_command_leaders(c: EPaxosCluster, until: float) -> None:
    rng = random.Random(c.world.rng.getrandbits(64))
    world = c.world

    def step() -> None:
        if world.now >= until:
            return
        alive = world.alive()
        down = [n for n in c.names if n not in alive]
        if alive and len(down) < (len(c.names) - 1) // 2:
            busy = [n for n in alive if c.node(n).drives]
            victim = rng.choice(busy or alive)
            world.crash(victim, lose_unsynced=rng.random() < 0.5)
            world.after(rng.uniform(0.2, 0.8), lambda: world.restart(victim))
        world.after(rng.expovariate(1 / 0.4), step)

    world.schedule(0.3, step)


def _run_one(seed: int, **kw: bool) -> str | None:
    try:
        return run_schedule(seed, **kw)
    except Exception as e:  # reported with its seed, like any other failure
        return f"{type(e).__name__}: {e}"


def _workers(seeds: list[int]) -> int:
    """Schedules are independent pure functions of their seeds: a sweep runs them on the
    machine's cores (``NOVACRON_SIM_WORKERS=1``: in this process, as one replayed seed is)."""
    if len(seeds) < 2:
        return 1
    return max(1, int(os.environ.get("NOVACRON_SIM_WORKERS", min(2, os.cpu_count() or 1))))


def _sweep(seeds: list[int], test: str, **kw: bool) -> None:
    failures, unchecked = [], []
    run = functools.partial(_run_one, **kw)
    workers = _workers(seeds)
    if workers == 1:
        results = [run(seed) for seed in seeds]
    else:
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
            results = list(pool.map(run, seeds, chunksize=10))
    for seed, err in zip(seeds, results, strict=True):
        if err is not None and err.startswith(EXHAUSTED):
            unchecked.append(seed)
        elif err is not None:
            failures.append(f"seed {seed}: {err}\n  {replay_hint(seed, test)}")
    assert not failures, "\n".join(failures[:5])
    assert len(unchecked) <= MAX_EXHAUSTED * len(seeds), f"histories not decided: {unchecked}"


def test_random_fault_schedules_are_linearizable() -> None:
    _sweep(sim_seeds(300), "test_random_fault_schedules_are_linearizable")


def test_killed_command_leaders_are_recovered_and_histories_stay_linearizable() -> None:
    _sweep(sim_seeds(150, base=40_000), "test_killed_command_leaders", kill_leaders=True)


def test_five_replicas_under_faults_stay_linearizable() -> None:
    _sweep(sim_seeds(50, base=50_000), "test_five_replicas_under_faults", five=True)


@pytest.mark.soak
@pytest.mark.skipif(not os.environ.get("NOVACRON_SOAK"), reason="make soak only")
def test_soak_epaxos_fault_schedules() -> None:
    count = int(os.environ.get("NOVACRON_SOAK_SCHEDULES", "20000"))
    seeds = sim_seeds(count, base=200_000)
    _sweep([s for s in seeds if s % 4 == 1], "test_soak_epaxos", kill_leaders=True)
    _sweep([s for s in seeds if s % 4 == 2], "test_soak_epaxos", five=True)
    _sweep([s for s in seeds if s % 4 in (0, 3)], "test_soak_epaxos")
