"""Multi-Paxos under the deterministic simulator, with the fault schedules Raft runs
(``random_faults``: partitions, one-way blocks, crashes with and without unsynced-write loss,
drops, duplicates, reordering; membership churn; crash signals and false alarms) and the
same retrying KV clients: every history must be linearizable, Paxos's invariants hold after
every step, and once healed the group commits again. Flexible (FPaxos) and grid quorums
get schedules of their own on five members.

``NOVACRON_SEED=N`` replays one schedule; ``NOVACRON_SIM_SCHEDULES=K`` sweeps K per test."""

from __future__ import annotations

import os
import random

import pytest

from novacron_core.consensus.interface import OK
from novacron_core.consensus.quorum import MAJORITY, QuorumStrategy, parse_strategy
from novacron_core.sim import (
    KVModel,
    apply_faults,
    check_linearizable,
    random_faults,
    replay_hint,
    sim_seeds,
)
from tests.consensus.cluster import Workload, change_member
from tests.consensus.paxos_cluster import PaxosCluster


def run_schedule(
    seed: int,
    membership: bool = False,
    signals: bool = False,
    quorum: QuorumStrategy = MAJORITY,
    voters: tuple[str, ...] = ("n1", "n2", "n3"),
) -> str | None:
    """One fault schedule; a failure description or None."""
    spares = ("n4", "n5") if membership else ()
    c = PaxosCluster(seed=seed, voters=voters, spares=spares, quorum=quorum)
    w = Workload(c)  # type: ignore[arg-type]  # (it needs world, names and voters)
    faults_end = 3.0
    w.start(until=faults_end + 1.5)
    if signals:
        c.signal_crashes()
        _false_alarms(c, until=faults_end)
    apply_faults(c.world, random_faults(c.world.rng, c.names, faults_end, mean_gap=0.3))
    if membership:
        _churn_membership(c, until=faults_end)
    try:
        c.world.run_until(faults_end + 2.5)
        reply = c.put("liveness", b"x")
        if reply is None or reply.status != OK:
            return f"no write chosen after healing: {reply}"
    except AssertionError as e:
        return f"{type(e).__name__}: {e}"
    w.history.close()
    res = check_linearizable(w.history, KVModel())
    if not res.ok and not res.exhausted:
        return f"not linearizable on key {res.key}: {res.explanation}"
    return None


def _churn_membership(c: PaxosCluster, until: float) -> None:
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
            world.request(lead, change_member(action, node))
        world.after(rng.uniform(0.1, 0.5), step)

    world.schedule(0.5, step)


def _false_alarms(c: PaxosCluster, until: float, gap: float = 0.2) -> None:
    rng = random.Random(c.world.rng.getrandbits(64))

    def step() -> None:
        if c.world.now >= until:
            return
        lead = c.leader()
        followers = sorted(n for n in c.world.alive() if n != lead)
        if lead is not None and followers:
            c.signal_unreachable(rng.choice(followers), lead)
        c.world.after(rng.expovariate(1 / gap), step)

    c.world.schedule(0.2, step)


def _sweep(seeds: list[int], test: str, **kw: object) -> None:
    failures = []
    for seed in seeds:
        err = run_schedule(seed, **kw)  # type: ignore[arg-type]
        if err is not None:
            failures.append(f"seed {seed}: {err}\n  {replay_hint(seed, test)}")
    assert not failures, "\n".join(failures[:5])


FIVE = ("n1", "n2", "n3", "n4", "n5")


def test_multi_paxos_fault_schedules_are_linearizable() -> None:
    _sweep(sim_seeds(300), "test_multi_paxos_fault_schedules")


def test_multi_paxos_membership_changes_during_faults_stay_linearizable() -> None:
    _sweep(sim_seeds(100, base=10_000), "test_multi_paxos_membership", membership=True)


def test_multi_paxos_crash_signals_and_false_alarms_stay_linearizable() -> None:
    _sweep(sim_seeds(50, base=30_000), "test_multi_paxos_crash_signals", signals=True)


def test_flexible_and_grid_quorums_under_faults_stay_linearizable() -> None:
    flexible = parse_strategy("flexible:q2=2")  # |Q1| = 4 of 5
    _sweep(sim_seeds(30, base=40_000), "test_flexible_and_grid", quorum=flexible, voters=FIVE)
    grid = parse_strategy("grid:cols=2")  # rows n1 n2 | n3 n4 | n5
    _sweep(sim_seeds(20, base=41_000), "test_flexible_and_grid", quorum=grid, voters=FIVE)


@pytest.mark.soak
@pytest.mark.skipif(not os.environ.get("NOVACRON_SOAK"), reason="make soak only")
def test_soak_multi_paxos_fault_schedules() -> None:
    count = int(os.environ.get("NOVACRON_SOAK_SCHEDULES", "20000"))
    seeds = sim_seeds(count, base=100_000)
    _sweep([s for s in seeds if s % 4 in (1, 2)], "test_soak_multi_paxos")
    _sweep([s for s in seeds if s % 4 == 0], "test_soak_multi_paxos", membership=True)
    _sweep([s for s in seeds if s % 8 == 3], "test_soak_multi_paxos", signals=True)
    flexible = parse_strategy("flexible:q2=2")
    _sweep([s for s in seeds if s % 8 == 7], "test_soak_multi_paxos", quorum=flexible, voters=FIVE)
