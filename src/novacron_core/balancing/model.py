"""What the pool is told and what it answers: backend and pool specs, a request's needs,
the ticket it gets (or why not), and the backends it removed."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from novacron_core.balancing.algorithms import PickContext
from novacron_core.balancing.backend import Backend, SlowStart
from novacron_core.balancing.circuit import CircuitSpec
from novacron_core.balancing.geo import GeoPoint
from novacron_core.balancing.health import CheckSpec
from novacron_core.balancing.outlier import OutlierSpec

Affinity = Literal["none", "ring", "maglev"]


@dataclass(frozen=True, slots=True)
class BackendSpec:
    id: str
    host: str
    port: int
    region: str
    zone: str = ""
    weight: int = 1
    priority: int = 0
    location: GeoPoint | None = None


@dataclass(frozen=True, slots=True)
class PoolSpec:
    algorithm: str = "least_request"
    affinity: Affinity = "none"
    vnodes: int = 150
    maglev_size: int = 0  # 0: the smallest prime >= max(4099, 100 x backends): M > 100 N
    overprovisioning: float = 1.4
    panic_threshold: float = 50.0  # percent of total health
    slow_start: SlowStart = field(default_factory=SlowStart)
    ewma_tau_s: float = 10.0
    health: CheckSpec = field(default_factory=CheckSpec)
    outlier: OutlierSpec = field(default_factory=OutlierSpec)
    circuit: CircuitSpec = field(default_factory=CircuitSpec)
    drain_timeout_s: float = 30.0

    def __post_init__(self) -> None:
        if self.overprovisioning < 1.0:
            raise ValueError("overprovisioning: at least 1.0 (Envoy's default is 1.4)")
        if not 0 <= self.panic_threshold <= 100:
            raise ValueError("panic_threshold: a percentage in [0, 100]")
        if self.drain_timeout_s < 0:
            raise ValueError("drain_timeout_s: not negative")


@dataclass(slots=True)
class Request:
    """What the balancer needs to know about one request (or one retry of it)."""

    region: str | None = None  # preferred region (required when strict); None: by origin
    strict: bool = False
    write: bool = False
    affinity_key: bytes | None = None
    ctx: PickContext = field(default_factory=PickContext)
    exclude: frozenset[str] = frozenset()  # backends this request already tried
    retry: bool = False


@dataclass(slots=True)
class Choice:
    backend: Backend
    region: str
    level: int
    panic: bool
    retry: bool
    trial: bool  # a half-open breaker's trial request
    released: bool = False


@dataclass(frozen=True, slots=True)
class Refusal:
    """Nothing was sent: the caller may answer 503 with Retry-After (never applied)."""

    reason: str
    retry_after_s: float = 1.0


@dataclass(slots=True)
class Gone:
    """A backend removed from the pool: drained (``aborted`` False) or its drain deadline
    passed with ``in_flight`` requests still running (the process cuts them off)."""

    backend: Backend
    aborted: bool
    in_flight: int
