"""Sync engines in the deterministic simulator: the workloads behind tests and figures
(``benchmarks/sync_figures.py``); test helpers, not part of the product."""

from __future__ import annotations

import functools
import statistics
from dataclasses import dataclass, field
from typing import Any

from novacron_core.clocks import Dot
from novacron_core.codec import encode
from novacron_core.sim import Topology, World
from novacron_core.sync.crdt import GCounter, LWWRegister
from novacron_core.sync.engine import Mutate, SyncConfig, SyncNode
from novacron_core.sync.messages import Update
from novacron_core.sync.persist import MemoryDurable


@dataclass
class Tracker:
    """When each update was issued and when it reached each replica."""

    replicas: int
    issued: dict[Dot, float] = field(default_factory=dict)
    reached: dict[Dot, int] = field(default_factory=dict)
    done: dict[Dot, float] = field(default_factory=dict)
    delta_bytes: int = 0
    keyed_bytes: int = 0  # key + delta: what a receiver needs to apply it

    def hook(self, node: str, upd: Update, now: float) -> None:
        dot = Dot(upd.origin, upd.seq)
        n = self.reached.get(dot, 0) + 1
        self.reached[dot] = n
        if n == 1:
            self.issued[dot] = now
            self.delta_bytes += len(upd.delta)
            self.keyed_bytes += len(upd.delta) + len(upd.key.encode())
        if n == self.replicas:
            self.done[dot] = now - self.issued[dot]


def cluster(
    world: World, per_region: int, config: SyncConfig, tracker: Tracker | None = None
) -> list[str]:
    names = {
        f"{region}-n{i}": region for region in world.topology.regions for i in range(per_region)
    }
    for name, region in names.items():
        # a seed per incarnation, drawn when it starts (as a real process would draw one)
        def factory(node_id: str, durable: Any, region: str = region) -> SyncNode:
            seed = world.rng.randrange(2**32)
            return SyncNode(
                node_id, region, names, durable, config, seed, tracker.hook if tracker else None
            )

        world.add_node(name, region, factory, MemoryDurable())
    return list(names)


def increment(world: World, node: str) -> None:
    world.request(node, Mutate("hits", GCounter, lambda c: c.increment(1)))


def counters(world: World, names: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for n in names:
        m = world.machine(n)
        out[n] = None if m is None else m.store.value("hits")
    return out


def latency_run(
    seed: int = 1,
    regions: int = 5,
    per_region: int = 5,
    one_way_ms: float = 100.0,
    loss: float = 0.05,
    rate: float = 10.0,
    duration: float = 10.0,
    partition: tuple[float, float] | None = (3.0, 5.0),
    config: SyncConfig | None = None,
) -> dict[str, Any]:
    """Every replica issues ``rate`` updates/s; every link is ``one_way_ms`` away."""
    topo = Topology.uniform(regions, one_way_ms, intra_rtt_ms=2 * one_way_ms)
    world = World(seed, topo)
    world.net.drop_rate = loss
    tracker = Tracker(regions * per_region)
    names = cluster(world, per_region, config or SyncConfig(), tracker)
    step = 1.0 / rate
    for k, n in enumerate(names):
        t = step * k / len(names)
        while t < duration:
            world.schedule(t, functools.partial(increment, world, n))
            t += step
    if partition is not None:
        half = topo.regions[: regions // 2]
        world.schedule(partition[0], lambda: world.partition([half]))
        world.schedule(partition[1], world.heal)
    world.run_until(duration)
    sent_during_workload = world.stats.messages_sent
    world.run_until(duration + 10.0)
    values = counters(world, names)
    cut = (partition[0] - 1.0, partition[1] + 1.0) if partition else (duration, duration)
    steady = [t for d, t in tracker.done.items() if not cut[0] <= tracker.issued[d] <= cut[1]]
    updates = len(tracker.issued)
    return {
        "replicas": len(names),
        "updates": updates,
        "converged": len(set(values.values())) == 1 and values[names[0]] == updates,
        "delivered_everywhere": len(tracker.done),
        "median_ms": 1000 * statistics.median(steady) if steady else None,
        "p99_ms": 1000 * sorted(steady)[int(0.99 * (len(steady) - 1))] if steady else None,
        "max_ms": 1000 * max(steady) if steady else None,
        "max_incl_partition_ms": 1000 * max(tracker.done.values()) if tracker.done else None,
        "msgs_per_update": sent_during_workload / max(1, updates),
        "loss": loss,
    }


def bytes_run(
    seed: int = 1,
    per_region: int = 3,
    updates: int = 100_000,
    rate: float = 5000.0,
    keys: int = 1000,
    config: SyncConfig | None = None,
) -> dict[str, Any]:
    """``updates`` LWW writes spread over 9 replicas in 3 regions; bytes on the wire vs the
    bytes each other replica had to receive."""
    world = World(seed, Topology.three_regions(), sizer=lambda m: len(encode(m)))
    cfg = config or SyncConfig(
        pull=True, fanout=1, interval=0.05, ae_interval=5.0, causal_deps=False
    )
    n_rep = 3 * per_region
    tracker = Tracker(n_rep)
    names = cluster(world, per_region, cfg, tracker)
    step = 1.0 / rate
    for i in range(updates):
        node = names[i % len(names)]
        key = f"vm{i % keys}"

        def write(node: str = node, key: str = key, i: int = i) -> None:
            m = world.machine(node)
            ts = m.hlc.now(int(world.now * 1000))
            world.request(node, Mutate(key, LWWRegister, lambda r: r.assign(i, ts)))

        world.schedule(i * step, write)
    duration = updates * step
    world.run_until(duration + 1.0)
    world.run_while(lambda: len(tracker.done) < updates, duration + 60.0)
    states = [
        {k: world.machine(n).store.value(k) for k, _ in world.machine(n).store} for n in names
    ]
    payload = tracker.delta_bytes * (n_rep - 1)
    keyed = tracker.keyed_bytes * (n_rep - 1)
    return {
        "replicas": n_rep,
        "updates": len(tracker.issued),
        "converged": all(s == states[0] for s in states) and len(tracker.done) == updates,
        "bytes_sent": world.stats.bytes_sent,
        "ratio_vs_keyed_deltas": world.stats.bytes_sent / max(1, keyed),
        "ratio_vs_crdt_deltas": world.stats.bytes_sent / max(1, payload),
        "messages": world.stats.messages_sent,
        "sim_seconds": world.now,
    }
