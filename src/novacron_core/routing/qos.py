"""Five QoS classes: their DSCP code points, how each prefers its paths, and how much of a
link each may reserve.

DSCP values follow RFC 4594's service classes: Expedited Forwarding (46) for the critical
class (replication acknowledgements, Raft across regions), AF41/AF31/AF11 for the assured
classes, and Default Forwarding (0) for best effort. ``reservable`` caps the share of a
link's bandwidth that reservations of that class and every less important class may hold
together (nested limits, as in the Russian-dolls model of RFC 4127): the less important
classes together can never hold more than their cap, so what lies above it stays for the
more important ones. Best effort reserves nothing; it takes what is left.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from novacron_core.routing.graph import Metric


@dataclass(frozen=True)
class ClassSpec:
    dscp: int
    rank: int  # 0 is the most important
    order: tuple[Metric, ...]  # lexicographic path preference
    backups: int  # precomputed link-disjoint backups (0..3)
    reservable: float  # share of a link this class and every less important one may hold


class QoS(Enum):
    CRITICAL = "critical"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"
    BEST_EFFORT = "best-effort"

    @property
    def spec(self) -> ClassSpec:
        return CLASSES[self]

    @property
    def dscp(self) -> int:
        return CLASSES[self].dscp

    @property
    def tos(self) -> int:
        """The IP TOS byte to set on a socket (``IP_TOS``): DSCP in its upper six bits."""
        return CLASSES[self].dscp << 2

    @classmethod
    def parse(cls, value: str) -> QoS:
        try:
            return cls(value.strip().lower().replace("_", "-"))
        except ValueError:
            names = ", ".join(q.value for q in cls)
            raise ValueError(f"qos: one of {names}, not {value!r}") from None


CLASSES: dict[QoS, ClassSpec] = {
    QoS.CRITICAL: ClassSpec(46, 0, ("latency", "cost"), 3, 1.0),
    QoS.HIGH: ClassSpec(34, 1, ("latency", "cost"), 2, 0.8),
    QoS.MEDIUM: ClassSpec(26, 2, ("latency", "cost"), 1, 0.6),
    QoS.LOW: ClassSpec(10, 3, ("cost", "latency"), 1, 0.4),
    QoS.BEST_EFFORT: ClassSpec(0, 4, ("cost", "latency"), 1, 0.0),
}
