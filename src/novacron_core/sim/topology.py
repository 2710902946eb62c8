"""Where simulated nodes live and how far apart their regions are."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

# Round-trip times in ms between GCP regions, the matrix `cockroach demo --global` injects.
COCKROACH_DEMO_RTT_MS: dict[tuple[str, str], float] = {
    ("us-east1", "us-west1"): 66.0,
    ("us-east1", "europe-west1"): 64.0,
    ("us-west1", "europe-west1"): 146.0,
}

# A 5-region extension using commonly published inter-region medians (ms RTT).
FIVE_REGION_RTT_MS: dict[tuple[str, str], float] = {
    **COCKROACH_DEMO_RTT_MS,
    ("us-east1", "asia-northeast1"): 158.0,
    ("us-west1", "asia-northeast1"): 90.0,
    ("europe-west1", "asia-northeast1"): 222.0,
    ("us-east1", "southamerica-east1"): 117.0,
    ("us-west1", "southamerica-east1"): 172.0,
    ("europe-west1", "southamerica-east1"): 186.0,
    ("asia-northeast1", "southamerica-east1"): 256.0,
}


@dataclass(frozen=True)
class Topology:
    """Regions and the round-trip time between each pair (symmetric, in milliseconds)."""

    regions: tuple[str, ...]
    rtt_ms: Mapping[tuple[str, str], float] = field(default_factory=dict)
    intra_rtt_ms: float = 1.0

    def rtt(self, a: str, b: str) -> float:
        if a == b:
            return self.intra_rtt_ms
        ms = self.rtt_ms.get((a, b))
        if ms is None:
            ms = self.rtt_ms.get((b, a))
        if ms is None:
            raise KeyError(f"no RTT between regions {a!r} and {b!r}")
        return ms

    def one_way_s(self, a: str, b: str) -> float:
        return self.rtt(a, b) / 2000.0

    @classmethod
    def three_regions(cls) -> Topology:
        return cls(("us-east1", "us-west1", "europe-west1"), COCKROACH_DEMO_RTT_MS)

    @classmethod
    def five_regions(cls) -> Topology:
        return cls(
            ("us-east1", "us-west1", "europe-west1", "asia-northeast1", "southamerica-east1"),
            FIVE_REGION_RTT_MS,
        )

    @classmethod
    def uniform(cls, regions: int, one_way_ms: float, intra_rtt_ms: float = 1.0) -> Topology:
        """``regions`` regions, every pair ``one_way_ms`` apart (Gossip Glomers style)."""
        names = tuple(f"r{i}" for i in range(regions))
        rtt = {(a, b): 2 * one_way_ms for i, a in enumerate(names) for b in names[i + 1 :]}
        return cls(names, rtt, intra_rtt_ms)
