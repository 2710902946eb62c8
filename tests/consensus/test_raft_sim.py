"""Raft under the deterministic simulator: invariants after every step, linearizable
histories under random fault schedules (partitions, crashes with and without unsynced-write
loss, drops, duplicates, reordering, membership changes during faults)."""

from __future__ import annotations

import os
import random
from dataclasses import replace

import pytest

from novacron_core.consensus.raft import LEADER, OK, ChangeMember, RaftConfig
from novacron_core.sim import (
    KVModel,
    apply_faults,
    check_linearizable,
    random_faults,
    replay_hint,
    sim_seeds,
)
from tests.consensus.cluster import FAST, SimCluster, Workload


def run_schedule(seed: int, membership: bool = False, config: RaftConfig = FAST) -> str | None:
    """One fault schedule; returns a failure description or None."""
    spares = ("n4", "n5") if membership else ()
    c = SimCluster(seed=seed, spares=spares, config=config)
    w = Workload(c)
    faults_end = 3.0
    w.start(until=faults_end + 1.5)
    apply_faults(c.world, random_faults(c.world.rng, c.names, faults_end, mean_gap=0.3))
    if membership:
        _churn_membership(c, until=faults_end)
    try:
        c.world.run_until(faults_end + 2.5)
        # Liveness: once healed and restarted, the group elects a leader and commits.
        reply = c.put("liveness", b"x")
        if reply is None or reply.status != OK:
            return f"no write committed after healing: {reply}"
    except AssertionError as e:
        return f"{type(e).__name__}: {e}"
    w.history.close()
    res = check_linearizable(w.history, KVModel())
    if not res.ok and not res.exhausted:
        return f"not linearizable on key {res.key}: {res.explanation}"
    return None


def _churn_membership(c: SimCluster, until: float) -> None:
    rng = random.Random(c.world.rng.getrandbits(64))
    world = c.world

    def step() -> None:
        if world.now >= until:
            return
        lead = c.leader()
        if lead is not None:
            m = c.node(lead)
            node = rng.choice(c.names)
            if node in m.conf.learners:
                action = "promote"
            elif node in m.conf.voters:
                action = "remove" if len(m.conf.voters) > 3 else "add_learner"
            else:
                action = rng.choice(["add_learner", "add_voter"])
            world.request(lead, ChangeMember(action, node))
        world.after(rng.uniform(0.1, 0.5), step)

    world.schedule(0.5, step)


def _sweep(seeds: list[int], membership: bool, test: str, config: RaftConfig = FAST) -> None:
    failures = []
    for seed in seeds:
        err = run_schedule(seed, membership, config)
        if err is not None:
            failures.append(f"seed {seed}: {err}\n  {replay_hint(seed, test)}")
    assert not failures, "\n".join(failures[:5])


def test_three_nodes_elect_one_leader_and_serve_writes() -> None:
    c = SimCluster(seed=3)
    lead = c.wait_leader()
    assert sum(1 for n in c.names if c.node(n).role == LEADER) == 1
    reply = c.put("vm/1", b"running")
    assert reply is not None
    assert reply.status == OK
    assert c.get("vm/1") == b"running"
    c.world.run_for(1.0)
    assert all(c.node(n).commit == c.node(lead).commit for n in c.names)


def test_random_fault_schedules_are_linearizable() -> None:
    _sweep(sim_seeds(400), False, "test_random_fault_schedules_are_linearizable")


def test_membership_changes_during_faults_stay_linearizable() -> None:
    _sweep(sim_seeds(150, base=10_000), True, "test_membership_changes_during_faults")


def test_lease_reads_under_faults_stay_linearizable() -> None:
    # The simulator's clocks do not drift, which is exactly the assumption leases rely on.
    lease = replace(FAST, read_mode="lease")
    _sweep(sim_seeds(50, base=20_000), False, "test_lease_reads_under_faults", lease)


@pytest.mark.soak
@pytest.mark.skipif(not os.environ.get("NOVACRON_SOAK"), reason="make soak only")
def test_soak_fault_schedules() -> None:
    count = int(os.environ.get("NOVACRON_SOAK_SCHEDULES", "20000"))
    seeds = sim_seeds(count, base=100_000)
    _sweep([s for s in seeds if s % 4], False, "test_soak_fault_schedules")
    _sweep([s for s in seeds if s % 4 == 0], True, "test_soak_fault_schedules")
