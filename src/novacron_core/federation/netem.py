"""Injected network conditions between regions (sans-IO: decides, never sleeps).

Unprivileged stand-in for ``tc netem``: the sender asks :meth:`LinkRules.delay` before each
message and either drops it (``None``) or hands it over after the returned one-way delay.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from novacron_core.sim.topology import COCKROACH_DEMO_RTT_MS, Topology


@dataclass
class LinkRules:
    """One-way delay between regions (half the RTT) and which regions are cut off."""

    rtt_ms: Mapping[tuple[str, str], float] = field(default_factory=dict)
    partitioned: set[str] = field(default_factory=set)
    intra_rtt_ms: float = 0.0

    def rtt(self, a: str, b: str) -> float:
        if a == b:
            return self.intra_rtt_ms
        return self.rtt_ms.get((a, b), self.rtt_ms.get((b, a), 0.0))

    def delay(self, src_region: str, dst_region: str) -> float | None:
        """Seconds to hold a message from ``src_region`` to ``dst_region``; None: drop it."""
        if src_region != dst_region and (
            src_region in self.partitioned or dst_region in self.partitioned
        ):
            return None
        return self.rtt(src_region, dst_region) / 2000.0

    def set_partitioned(self, regions: Iterable[str]) -> None:
        self.partitioned = set(regions)


def demo_regions(count: int) -> list[str]:
    """Region names for ``count`` regions: the cockroach-demo three first, then r4, r5..."""
    base = list(Topology.three_regions().regions)
    return base[:count] + [f"r{i + 1}" for i in range(len(base), count)]


def demo_rtt(regions: list[str]) -> dict[tuple[str, str], float]:
    """The cockroach-demo RTT matrix; pairs it does not name get 100 ms."""
    out: dict[tuple[str, str], float] = {}
    for i, a in enumerate(regions):
        for b in regions[i + 1 :]:
            out[(a, b)] = COCKROACH_DEMO_RTT_MS.get(
                (a, b), COCKROACH_DEMO_RTT_MS.get((b, a), 100.0)
            )
    return out
