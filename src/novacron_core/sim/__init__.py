"""Deterministic simulation: the same sans-IO machines as the runtime, on a virtual clock.

A run is a pure function of its seed and the code: a failing seed replays exactly
(``NOVACRON_SEED=N``). See ``World`` for the driver, ``faults`` for schedules, and the
checkers for what a run must satisfy.
"""

from novacron_core.sim.convergence import ConvergenceResult, check_convergence
from novacron_core.sim.faults import Fault, apply_faults, random_faults
from novacron_core.sim.history import History, Op
from novacron_core.sim.linearizability import UNKNOWN, CheckResult, KVModel, check_linearizable
from novacron_core.sim.network import NetConfig, NetStats
from novacron_core.sim.seeds import replay_hint, sim_seeds
from novacron_core.sim.topology import Topology
from novacron_core.sim.world import SimNode, World

__all__ = [
    "UNKNOWN",
    "CheckResult",
    "ConvergenceResult",
    "Fault",
    "History",
    "KVModel",
    "NetConfig",
    "NetStats",
    "Op",
    "SimNode",
    "Topology",
    "World",
    "apply_faults",
    "check_convergence",
    "check_linearizable",
    "random_faults",
    "replay_hint",
    "sim_seeds",
]
