"""Regions writing VM records the way a region's leader does (prepare on top of what its
replica holds, commit as its own copy), and replicas receiving the copies: the conflict
engine without Raft or a network, for the unit and property suites."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from novacron_core.conflict.engine import ConflictEngine, copy_key
from novacron_core.conflict.policy import Policies
from novacron_core.conflict.writes import Change, Prepared, Result, WriteContext

REGIONS = ["r1", "r2", "r3", "r4", "r5"]
POOLS = {r: f"10.{16 + i}.0.0/16" for i, r in enumerate(REGIONS)}


@dataclass
class Region:
    """One region's leader: its own copies (its group's KV) and its node's engine."""

    name: str
    engine: ConflictEngine
    kv: dict[str, bytes] = field(default_factory=dict)
    clock: int = 0
    published: list[tuple[str, bytes]] = field(default_factory=list)

    def write(self, vm: str, change: Change, wall_ms: int | None = None, **ctx: Any) -> Result:
        self.clock = max(self.clock + 1, wall_ms or 0)
        stamp = self.engine_hlc(self.clock)
        out = self.engine.prepare(
            vm,
            change,
            self.kv.get(vm),
            WriteContext(self.name, stamp, **ctx),
            self.clock / 1000,
        )
        if isinstance(out, Prepared):
            self.kv[vm] = out.value
            self.published.append((copy_key(vm, self.name), out.value))
            self.receive(copy_key(vm, self.name), out.value)
        return out

    def engine_hlc(self, wall: int) -> tuple[int, int, str]:
        return (wall, 0, self.name)

    def receive(self, key: str, raw: bytes) -> None:
        self.engine.on_copy(key, raw)
        self.engine.settle(self.clock)


def regions(n: int = 3, policies: Policies | None = None) -> list[Region]:
    names = REGIONS[:n]
    return [
        Region(r, ConflictEngine(r, None, policies, {k: POOLS[k] for k in names})) for r in names
    ]


def deliver(src: Region, dst: Region) -> None:
    for key, raw in src.published:
        dst.receive(key, raw)


def replica(n: int = 3, policies: Policies | None = None, name: str = "obs") -> ConflictEngine:
    return ConflictEngine(name, None, policies, {k: POOLS[k] for k in REGIONS[:n]})
