"""The plan of one demo network (names, addresses, ``tc`` batches): pure, no side effects;
``demo/netns.py`` applies it."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

DEV = "eth0"  # the region's interface, inside its namespace
DROP_CLASS = 2
DELAY_PREF, PARTITION_PREF = 10, 1


@dataclass(frozen=True)
class NetPlan:
    """Names, addresses and tc commands of one run's network (no side effects)."""

    prefix: str
    regions: tuple[str, ...]
    block: ipaddress.IPv4Network
    rtt_ms: Mapping[tuple[str, str], float] = field(default_factory=dict)
    netem: bool = True

    def ns(self, i: int) -> str:
        return f"{self.prefix}-{self.regions[i]}"

    @property
    def bridge(self) -> str:
        return f"{self.prefix}br"

    def host_if(self, i: int) -> str:
        return f"{self.prefix}h{i}"

    def subnet(self, i: int) -> ipaddress.IPv4Network:
        base = int(self.block.network_address) + 256 * i
        return ipaddress.IPv4Network((base, 24))

    @property
    def gateway(self) -> str:
        return str(ipaddress.IPv4Address(int(self.block.network_address) + 15 * 256 + 1))

    def node_addr(self, i: int, j: int) -> str:
        return str(self.subnet(i)[11 + j])

    def one_way_ms(self, i: int, k: int) -> float:
        a, b = self.regions[i], self.regions[k]
        return self.rtt_ms.get((a, b), self.rtt_ms.get((b, a), 0.0)) / 2.0

    def egress(self, i: int) -> list[str]:
        """``tc -batch`` lines for region ``i``'s egress: one class per other region."""
        lines = [
            f"qdisc add dev {DEV} root handle 1: htb default 1 r2q 100000",
            f"class add dev {DEV} parent 1: classid 1:1 htb rate 10gbit",
        ]
        for k in range(len(self.regions)):
            if k == i:
                continue
            cls = f"1:{10 + k}"
            leaf = (
                f"netem delay {self.one_way_ms(i, k):g}ms limit 100000"
                if self.netem
                else "pfifo limit 10000"
            )
            lines += [
                f"class add dev {DEV} parent 1: classid {cls} htb rate 10gbit",
                f"qdisc add dev {DEV} parent {cls} {leaf}",
                f"filter add dev {DEV} parent 1: protocol ip pref {DELAY_PREF} u32 "
                f"match ip dst {self.subnet(k)} flowid {cls}",
            ]
        return lines

    def bridge_port(self, i: int) -> list[str]:
        """``tc -batch`` lines (root namespace) for the bridge's port toward region ``i``:
        everything passes until a partition adds filters to the dropping class."""
        dev = self.host_if(i)
        return [
            f"qdisc add dev {dev} root handle 1: htb default 1 r2q 100000",
            f"class add dev {dev} parent 1: classid 1:1 htb rate 10gbit",
            f"class add dev {dev} parent 1: classid 1:{DROP_CLASS} htb rate 10gbit",
            f"qdisc add dev {dev} parent 1:{DROP_CLASS} pfifo limit 0",
        ]

    def partition(self, i: int, cut: Iterable[str]) -> list[str]:
        """``tc -batch`` lines (root namespace) that make the bridge port toward region ``i``
        match ``cut``: drop every packet from a region across the partition."""
        cut_set, dev = set(cut), self.host_if(i)
        lines = [f"filter del dev {dev} parent 1: protocol ip pref {PARTITION_PREF}"]
        for k, other in enumerate(self.regions):
            if k != i and (self.regions[i] in cut_set) != (other in cut_set):
                lines.append(
                    f"filter add dev {dev} parent 1: protocol ip pref {PARTITION_PREF} u32 "
                    f"match ip src {self.subnet(k)} flowid 1:{DROP_CLASS}"
                )
        return lines
