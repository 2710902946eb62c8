"""The federation's state flow in the deterministic simulator: 3 regions x 3 replicas with the
sidecar's exact sync configuration, the cockroach-demo latencies, a region partitioned while
both sides keep writing, replicas crashing with unsynced writes lost, then healing."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest

from novacron_core.clocks import HLC
from novacron_core.federation import vmflow
from novacron_core.sim.topology import Topology
from novacron_core.sim.world import World
from novacron_core.sync.engine import SyncNode
from novacron_core.sync.persist import MemoryDurable

SEEDS = [int(os.environ["NOVACRON_SEED"])] if "NOVACRON_SEED" in os.environ else range(12)


class Federation:
    def __init__(self, seed: int) -> None:
        self.world = World(seed, Topology.three_regions())
        self.regions = list(self.world.topology.regions)
        self.names = {f"{r}-n{i}": r for r in self.regions for i in range(3)}
        for name, region in self.names.items():
            node_seed = self.world.rng.randrange(2**32)

            def factory(
                node_id: str, durable: Any, region: str = region, s: int = node_seed
            ) -> Any:
                return SyncNode(node_id, region, self.names, durable, vmflow.FEDERATION_SYNC, s)

            self.world.add_node(name, region, factory, MemoryDurable())
        self.committed: dict[str, dict[str, bytes]] = {r: {} for r in self.regions}
        self.hlcs = {r: HLC(f"{r}-n0") for r in self.regions}

    def commit(self, region: str, vm: str, power: str) -> None:
        """What the region's Raft group committed; its leader (n0) publishes the change."""
        spec = {"cpus": 1, "memory_mib": 512, "image": "alpine", "disk_gib": 10}
        rec = {"id": vm, "name": vm, "home_region": region, "spec": spec, "power": power}
        rec["version"] = 1
        self.committed[region][vmflow.PREFIX + vm] = json.dumps(rec).encode()
        self.publish(region)

    def publish(self, region: str) -> None:
        leader = f"{region}-n0"
        node = self.world.machine(leader)
        if node is None:
            return
        now_ms = int(self.world.now * 1000)
        for change in vmflow.changes(self.committed[region], node.store, region):
            self.world.request(leader, vmflow.as_mutation(change, self.hlcs[region], now_ms))

    def views(self) -> list[list[dict[str, Any]]]:
        return [vmflow.records(self.world.machine(n).store) for n in self.world.alive()]

    def converged(self) -> bool:
        expected = sorted(
            (json.loads(raw) for recs in self.committed.values() for raw in recs.values()),
            key=lambda r: r["id"],
        )
        views = self.views()
        return len(views) == len(self.names) and all(v == expected for v in views)


@pytest.mark.parametrize("seed", SEEDS)
def test_every_replica_converges_after_a_partition_with_writes_on_both_sides(seed: int) -> None:
    fed = Federation(seed)
    w = fed.world
    for i, region in enumerate(fed.regions):
        w.schedule(0.1 * i, lambda r=region: fed.commit(r, f"web-{r}", "on"))
    w.run_for(0.25)  # all three committed and published
    assert w.run_while(lambda: not fed.converged(), 5.0), "no convergence before the partition"
    assert w.now - 0.2 < 1.0, f"propagation took {w.now - 0.2:.2f}s"

    cut = fed.regions[-1]
    w.partition([[cut]])
    start = w.now
    fed.commit(cut, "islanded", "on")
    fed.commit(fed.regions[0], "mainland", "on")
    fed.commit(fed.regions[0], f"web-{fed.regions[0]}", "off")
    victim = f"{fed.regions[1]}-n2"
    w.crash(victim, lose_unsynced=True)  # journal tail lost: anti-entropy must repair it
    w.run_for(3.0)
    mainland = vmflow.records(w.machine(f"{fed.regions[0]}-n1").store)
    assert "islanded" not in {r["id"] for r in mainland}
    island = {r["id"]: r for r in vmflow.records(w.machine(f"{cut}-n2").store)}
    assert "mainland" not in island
    assert island[f"web-{fed.regions[0]}"]["power"] == "on"  # readable, last replicated state

    w.restart(victim)
    w.heal()
    healed = w.now
    assert w.run_while(lambda: not fed.converged(), healed + 10.0), (
        f"seed {seed}: not converged 10 s after healing (partition at {start:.1f}s)"
    )
    assert w.now - healed < 5.0
