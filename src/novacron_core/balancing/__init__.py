"""Load balancing, sans-IO: algorithms, hashing for affinity, the pool with priority levels
and locality, health checks, outlier detection, circuit breaking and draining. Decisions
only: the gateway process (``runtime/gateway``) performs the I/O they call for."""

from novacron_core.balancing.algorithms import (
    ALGORITHMS,
    AlgorithmFactory,
    GeoProximity,
    IPHash,
    LeastConnections,
    LeastResponseTime,
    PickContext,
    PowerOfTwoChoices,
    RoundRobin,
    SmoothWeightedRoundRobin,
)
from novacron_core.balancing.backend import Backend, SlowStart
from novacron_core.balancing.circuit import Breaker, BreakerState, CircuitSpec, Limits
from novacron_core.balancing.geo import (
    Coordinates,
    Distances,
    GeoPoint,
    NoCoordinates,
    StaticCoordinates,
    haversine_km,
)
from novacron_core.balancing.hashing import HashRing, Maglev, key_hash, prime_at_least
from novacron_core.balancing.health import CheckSpec, HealthChecker, Verdict
from novacron_core.balancing.outlier import Outcome, OutlierDetector, OutlierSpec
from novacron_core.balancing.pool import (
    BackendSpec,
    Balancer,
    Choice,
    Gone,
    PoolSpec,
    Refusal,
    Request,
)

__all__ = [
    "ALGORITHMS",
    "AlgorithmFactory",
    "Backend",
    "BackendSpec",
    "Balancer",
    "Breaker",
    "BreakerState",
    "CheckSpec",
    "Choice",
    "CircuitSpec",
    "Coordinates",
    "Distances",
    "GeoPoint",
    "GeoProximity",
    "Gone",
    "HashRing",
    "HealthChecker",
    "IPHash",
    "LeastConnections",
    "LeastResponseTime",
    "Limits",
    "Maglev",
    "NoCoordinates",
    "Outcome",
    "OutlierDetector",
    "OutlierSpec",
    "PickContext",
    "PoolSpec",
    "PowerOfTwoChoices",
    "Refusal",
    "Request",
    "RoundRobin",
    "SlowStart",
    "SmoothWeightedRoundRobin",
    "StaticCoordinates",
    "Verdict",
    "haversine_km",
    "key_hash",
    "prime_at_least",
]
