"""Random fault schedules, drawn from the world's seeded RNG so that they replay.

A schedule always ends healed with every node restarted, at ``duration``, so a test can
then check liveness (the system recovers) as well as safety.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from novacron_core.sim.world import World


@dataclass(frozen=True)
class Fault:
    at: float
    action: str  # crash | restart | partition | block | heal | drop | dup | jitter
    args: tuple[Any, ...] = ()

    def apply(self, world: World) -> None:
        if self.action == "crash":
            world.crash(self.args[0], lose_unsynced=self.args[1])
        elif self.action == "restart":
            world.restart(self.args[0])
        elif self.action == "partition":
            world.partition(self.args[0])
        elif self.action == "block":
            world.block(self.args[0], self.args[1])
        elif self.action == "heal":
            world.heal()
        elif self.action == "drop":
            world.net.drop_rate = self.args[0]
        elif self.action == "dup":
            world.net.dup_rate = self.args[0]
        elif self.action == "jitter":
            world.net.jitter = self.args[0]
        else:
            raise ValueError(f"unknown fault {self.action!r}")


def random_faults(
    rng: random.Random,
    nodes: Sequence[str],
    duration: float,
    *,
    mean_gap: float = 0.5,
    crashes: bool = True,
    partitions: bool = True,
    lossy: bool = True,
    max_down: int | None = None,
) -> list[Fault]:
    """A schedule of faults over ``[0, duration)``, healed and restarted at ``duration``.

    ``max_down`` bounds how many nodes are crashed at once (default: a minority), so a
    majority protocol can make progress between faults.
    """
    nodes = list(nodes)
    limit = max_down if max_down is not None else (len(nodes) - 1) // 2
    kinds = []
    if crashes:
        kinds += ["crash", "restart"]
    if partitions:
        kinds += ["partition", "block", "heal"]
    if lossy:
        kinds += ["drop", "dup", "jitter"]
    out: list[Fault] = []
    down: set[str] = set()
    t = rng.expovariate(1 / mean_gap)
    while t < duration and kinds:
        kind = rng.choice(kinds)
        if kind == "crash" and len(down) < limit:
            victim = rng.choice([n for n in nodes if n not in down])
            down.add(victim)
            out.append(Fault(t, "crash", (victim, rng.random() < 0.5)))
        elif kind == "restart" and down:
            back = rng.choice(sorted(down))
            down.discard(back)
            out.append(Fault(t, "restart", (back,)))
        elif kind == "partition":
            shuffled = nodes[:]
            rng.shuffle(shuffled)
            cut = rng.randint(1, len(nodes) - 1)
            out.append(Fault(t, "partition", ([shuffled[:cut], shuffled[cut:]],)))
        elif kind == "block":
            a, b = rng.sample(nodes, 2)
            out.append(Fault(t, "block", (a, b)))
        elif kind == "heal":
            out.append(Fault(t, "heal"))
        elif kind == "drop":
            out.append(Fault(t, "drop", (rng.choice([0.0, 0.0, 0.05, 0.2]),)))
        elif kind == "dup":
            out.append(Fault(t, "dup", (rng.choice([0.0, 0.05, 0.2]),)))
        elif kind == "jitter":
            out.append(Fault(t, "jitter", (rng.choice([0.1, 1.0, 5.0]),)))
        t += rng.expovariate(1 / mean_gap)
    out += [
        Fault(duration, "heal"),
        Fault(duration, "drop", (0.0,)),
        Fault(duration, "dup", (0.0,)),
        Fault(duration, "jitter", (0.1,)),
    ]
    out += [Fault(duration, "restart", (n,)) for n in sorted(down)]
    return out


def apply_faults(world: World, faults: Sequence[Fault]) -> None:
    """Schedule every fault on ``world``'s virtual clock."""
    for fault in faults:
        world.schedule(fault.at, functools.partial(fault.apply, world))
