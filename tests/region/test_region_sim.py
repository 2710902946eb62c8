"""The region-node composite under fault schedules: 3 regions x 3 nodes, each node the very
machine ``novacron node`` runs, with crashes and restarts from durable state (losing
unsynced writes or not), partitions between and inside regions, killed leaders, loss,
duplication and reordering; checked for the four properties in ``federation.py``.

``NOVACRON_SEED=N`` replays one schedule (``NOVACRON_SEED=N pytest tests/region``, in either
test); ``NOVACRON_SIM_SCHEDULES=K`` sweeps K; ``make soak`` runs 10,000 others."""

from __future__ import annotations

import functools
import os
import random

import pytest

from novacron_core.consensus.interface import ConsensusProtocol
from novacron_core.consensus.registry import protocol
from novacron_core.sim import replay_hint, sim_seeds
from tests.region.federation import (
    RAFT,
    SimFederation,
    Violation,
    Workload,
    kill_leader,
    signal_crashes,
)

FAULTS_END = 3.0
PAXOS = protocol("multi-paxos")


def schedule(fed: SimFederation, rng: random.Random) -> None:
    """Random faults over [0, FAULTS_END), then healed with every node restarted."""
    w, names, regions = fed.world, list(fed.names), fed.regions
    down: set[str] = set()
    t = rng.expovariate(1 / 0.35)
    while t < FAULTS_END:
        kind = rng.choice(
            ["crash", "restart", "kill-leader", "cut-region", "split", "isolate", "heal", "lossy"]
        )
        if kind == "crash" and len(down) < 3:
            victim = rng.choice([n for n in names if n not in down])
            down.add(victim)
            w.schedule(t, functools.partial(w.crash, victim, rng.random() < 0.5))
        elif kind == "restart" and down:
            back = rng.choice(sorted(down))
            down.discard(back)
            w.schedule(t, functools.partial(w.restart, back))
        elif kind == "kill-leader":
            region, lose = rng.choice(regions), rng.random() < 0.5
            # the victim is whoever leads then; restarted a little later
            w.schedule(t, functools.partial(kill_leader, fed, region, lose))
            for n in fed.in_region(region):
                w.schedule(t + rng.uniform(0.2, 1.0), functools.partial(_restart_if, fed, n, down))
        elif kind == "cut-region":
            w.schedule(t, functools.partial(w.partition, [[rng.choice(regions)]]))
        elif kind == "split":
            shuffled = names[:]
            rng.shuffle(shuffled)
            cut = rng.randint(1, len(names) - 1)
            w.schedule(t, functools.partial(w.partition, [shuffled[:cut], shuffled[cut:]]))
        elif kind == "isolate":  # one node cut off inside its region
            w.schedule(t, functools.partial(w.partition, [[rng.choice(names)]]))
        elif kind == "heal":
            w.schedule(t, w.heal)
        elif kind == "lossy":
            drop, dup, jitter = (
                rng.choice([0.0, 0.05, 0.2]),
                rng.choice([0.0, 0.1]),
                rng.choice([0.1, 2.0]),
            )
            w.schedule(t, functools.partial(_lossy, fed, drop, dup, jitter))
        t += rng.expovariate(1 / 0.35)
    w.schedule(FAULTS_END, w.heal)
    w.schedule(FAULTS_END, functools.partial(_lossy, fed, 0.0, 0.0, 0.1))
    for n in names:
        w.schedule(FAULTS_END, functools.partial(w.restart, n))


def _restart_if(fed: SimFederation, name: str, down: set[str]) -> None:
    if name not in down:  # (nodes the schedule crashed itself come back on its own restart)
        fed.world.restart(name)


def _lossy(fed: SimFederation, drop: float, dup: float, jitter: float) -> None:
    net = fed.world.net
    net.drop_rate, net.dup_rate, net.jitter = drop, dup, jitter


def run_schedule(seed: int, protocol: ConsensusProtocol = RAFT) -> str | None:
    """One schedule; a description of what failed, or None. Every third schedule runs
    synchronous replication (syncFactor 1 or 2)."""
    sync = (1 + seed // 3 % 2) if seed % 3 == 2 else 0
    fed = SimFederation(seed, sync_factor=sync, protocol=protocol)
    rng = random.Random(fed.world.rng.getrandbits(64))
    if rng.random() < 0.5:
        signal_crashes(fed)
    work = Workload(fed)
    work.start(until=FAULTS_END + 1.0)
    schedule(fed, rng)
    w = fed.world
    try:
        w.run_until(FAULTS_END + 1.2)
        if not w.run_while(lambda: not fed.converged(), FAULTS_END + 15.0):
            return f"not converged 12 s after healing:\n{fed.differences()}"
    except Violation as e:
        return f"{e} (at t={w.now:.3f})"
    if fed.checker.changes == 0:
        return "no replica ever changed: the schedule checked nothing"
    return work.linearizable()


def _sweep(seeds: list[int], test: str, protocol: ConsensusProtocol = RAFT) -> None:
    for seed in seeds:
        failure = run_schedule(seed, protocol)
        assert failure is None, f"seed {seed}: {failure}\n{replay_hint(seed, test)}"


def test_the_federation_keeps_its_promises_under_300_fault_schedules() -> None:
    _sweep(sim_seeds(300), "test_the_federation_keeps_its_promises")


def test_region_nodes_running_multi_paxos_keep_the_same_promises() -> None:
    _sweep(sim_seeds(30, base=60_000), "test_region_nodes_running_multi_paxos", PAXOS)


@pytest.mark.soak
@pytest.mark.skipif(not os.environ.get("NOVACRON_SOAK"), reason="make soak only")
def test_soak_the_federation_under_10000_fault_schedules() -> None:
    count = int(os.environ.get("NOVACRON_SOAK_SCHEDULES", "10000"))
    _sweep(sim_seeds(count, base=100_000), "test_soak_the_federation")
