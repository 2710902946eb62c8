"""Load-balancing algorithms: given the backends a request may go to, pick one.

Each algorithm is a small state machine: ``pick(now, candidates, ctx)`` is handed a
non-empty list of *available* backends (the pool already filtered health, ejection,
circuit and draining) and returns one of them. Randomness comes from the ``random.Random``
it was built with, time from ``now``: replaying the same inputs replays the same picks.
The pool keeps one instance per group of backends (a region), because round-robin
positions and smooth-weighted credits only mean something within one group.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import xxhash

from novacron_core.balancing.backend import NO_SLOW_START, Backend, SlowStart
from novacron_core.balancing.geo import Distances, GeoPoint, haversine_km


@dataclass(slots=True)
class PickContext:
    """What is known about the request: who sent it and from where."""

    client_ip: str = ""
    client_location: GeoPoint | None = None
    region_hint: str | None = None
    # every backend of the group, available or not (IP hash keeps a client's backend
    # stable while others come and go, as nginx's ip_hash does)
    group: Sequence[Backend] = ()


class Algorithm(Protocol):
    name: str

    def pick(self, now: float, candidates: Sequence[Backend], ctx: PickContext) -> Backend: ...


class RoundRobin:
    """Each candidate in turn, ignoring weights."""

    name = "round_robin"

    def __init__(self) -> None:
        self.next = 0

    def pick(self, now: float, candidates: Sequence[Backend], ctx: PickContext) -> Backend:
        b = candidates[self.next % len(candidates)]
        self.next += 1
        return b


class SmoothWeightedRoundRobin:
    """nginx's smooth weighted round robin: every pick adds each candidate's weight to its
    credit, the richest wins and pays the total. Over ``sum(weights)`` picks each backend
    is chosen exactly ``weight`` times, interleaved (5,1,1 gives a a b a c a a, not
    a a a a a b c). Weights are scaled by slow start while a backend warms up."""

    name = "weighted_round_robin"

    def __init__(self, slow_start: SlowStart = NO_SLOW_START) -> None:
        self.credit: dict[str, float] = {}
        self.slow_start = slow_start

    def pick(self, now: float, candidates: Sequence[Backend], ctx: PickContext) -> Backend:
        credit = self.credit
        total = 0.0
        best = candidates[0]
        best_credit = -math.inf
        warm = now - self.slow_start.window_s  # joined before this: full weight
        for b in candidates:
            w = b.weight if b.since <= warm else b.effective_weight(now, self.slow_start)
            c = credit.get(b.id, 0.0) + w
            credit[b.id] = c
            total += w
            if c > best_credit:
                best, best_credit = b, c
        credit[best.id] = best_credit - total
        if len(credit) > 2 * len(candidates) + 8:  # forget backends long gone
            keep = {b.id for b in candidates}
            self.credit = {k: v for k, v in credit.items() if k in keep}
        return best


class LeastConnections:
    """Fewest requests in flight per unit of weight; ties go round the candidates so that
    an idle pool is not all sent to its first member."""

    name = "least_connections"

    def __init__(self, slow_start: SlowStart = NO_SLOW_START) -> None:
        self.next = 0
        self.slow_start = slow_start

    def pick(self, now: float, candidates: Sequence[Backend], ctx: PickContext) -> Backend:
        n = len(candidates)
        start = self.next % n
        self.next += 1
        warm = now - self.slow_start.window_s
        best = candidates[start]
        best_score = best.active / (
            best.weight if best.since <= warm else best.effective_weight(now, self.slow_start)
        )
        for i in range(1, n):
            b = candidates[(start + i) % n]
            w = b.weight if b.since <= warm else b.effective_weight(now, self.slow_start)
            score = b.active / w
            if score < best_score:
                best, best_score = b, score
        return best


class LeastResponseTime:
    """Lowest expected wait: response-time EWMA x (requests in flight + 1) / weight
    (Finagle's and linkerd's cost). A backend with no sample yet is assumed average, so a
    newcomer is tried without being flooded before its first answer."""

    name = "least_response_time"

    def __init__(self, slow_start: SlowStart = NO_SLOW_START) -> None:
        self.next = 0
        self.slow_start = slow_start

    def pick(self, now: float, candidates: Sequence[Backend], ctx: PickContext) -> Backend:
        known = [b.ewma_s for b in candidates if not math.isnan(b.ewma_s)]
        default = sum(known) / len(known) if known else 1.0
        n = len(candidates)
        start = self.next % n
        self.next += 1
        best, best_score = candidates[start], math.inf
        warm = now - self.slow_start.window_s
        for i in range(n):
            b = candidates[(start + i) % n]
            ewma = default if math.isnan(b.ewma_s) else b.ewma_s
            w = b.weight if b.since <= warm else b.effective_weight(now, self.slow_start)
            score = ewma * (b.active + 1) / w
            if score < best_score:
                best, best_score = b, score
        return best


class PowerOfTwoChoices:
    """Envoy's least request: draw ``choices`` (2) candidates at random, keep the one with
    the lowest ``(active + 1) ** bias / weight`` (with equal weights: fewer requests in
    flight). O(1) per pick, and no herd on the single least-loaded backend that several
    gateway replicas would all see at once."""

    name = "least_request"

    def __init__(
        self,
        rng: random.Random,
        slow_start: SlowStart = NO_SLOW_START,
        choices: int = 2,
        bias: float = 1.0,
    ) -> None:
        self.rng = rng
        self.slow_start = slow_start
        self.choices = choices
        self.bias = bias

    def pick(self, now: float, candidates: Sequence[Backend], ctx: PickContext) -> Backend:
        n = len(candidates)
        if n == 1:
            return candidates[0]
        if n <= self.choices:
            # all of them compete; start at a random one so that ties are not always won
            # by the first in the list
            start = int(self.rng.random() * n)
            drawn: Sequence[int] = [(start + k) % n for k in range(n)]
        elif self.choices == 2:
            # two distinct draws, each pair equally likely
            i = int(self.rng.random() * n)
            j = int(self.rng.random() * (n - 1))
            drawn = (i, j + 1 if j >= i else j)
        else:
            drawn = self.rng.sample(range(n), self.choices)
        best, best_score = candidates[drawn[0]], math.inf
        warm = now - self.slow_start.window_s
        unbiased = self.bias == 1.0
        for k in drawn:
            b = candidates[k]
            load = float(b.active + 1) if unbiased else (b.active + 1) ** self.bias
            w = b.weight if b.since <= warm else b.effective_weight(now, self.slow_start)
            score = load / w
            if score < best_score:
                best, best_score = b, score
        return best


@dataclass(slots=True)
class GeoProximity:
    """The candidates nearest the client (its location, else its region hint's location;
    network coordinates when the provider knows them), ties within ``tolerance_km`` (or
    ``tolerance_ms``) broken by ``inner``. Without any origin, ``inner`` decides alone."""

    distances: Distances
    inner: Algorithm
    tolerance_km: float = 50.0
    tolerance_ms: float = 2.0
    name: str = "geo_proximity"
    _km: dict[tuple[GeoPoint, GeoPoint], float] = field(default_factory=dict, repr=False)

    def pick(self, now: float, candidates: Sequence[Backend], ctx: PickContext) -> Backend:
        near = self.nearest(candidates, ctx)
        return self.inner.pick(now, near, ctx)

    def nearest(self, candidates: Sequence[Backend], ctx: PickContext) -> Sequence[Backend]:
        coords = self.distances.coordinates
        if ctx.region_hint is not None and ctx.client_location is None:
            rtts = [coords.rtt_ms(ctx.region_hint, b.region) for b in candidates]
            if all(r is not None for r in rtts):
                return _within(candidates, rtts, self.tolerance_ms)  # type: ignore[arg-type]
        origin = ctx.client_location
        if origin is None and ctx.region_hint is not None:
            origin = self.distances.location(ctx.region_hint)
        if origin is None:
            return candidates
        dist = []
        cache = self._km
        for b in candidates:
            loc = b.location or self.distances.location(b.region)
            if loc is None:
                dist.append(math.inf)
                continue
            km = cache.get((origin, loc))
            if km is None:
                if len(cache) > 4096:
                    cache.clear()
                km = cache[(origin, loc)] = haversine_km(origin, loc)
            dist.append(km)
        if all(math.isinf(d) for d in dist):
            return candidates
        return _within(candidates, dist, self.tolerance_km)


def _within(candidates: Sequence[Backend], dist: list[float], tol: float) -> list[Backend]:
    best = min(dist)
    return [b for b, d in zip(candidates, dist, strict=True) if d <= best + tol]


class IPHash:
    """A client address always maps to the same backend while that backend is available
    (nginx's ip_hash): the address is hashed over the whole group; if the backend it lands
    on is unavailable it is re-hashed (up to 20 times, as nginx), so clients of healthy
    backends never move when another backend fails. Then round robin."""

    name = "ip_hash"
    TRIES = 20

    def __init__(self) -> None:
        self.fallback = RoundRobin()

    def pick(self, now: float, candidates: Sequence[Backend], ctx: PickContext) -> Backend:
        group = ctx.group or candidates
        available = {id(b) for b in candidates}
        key = ctx.client_ip.encode()
        for salt in range(self.TRIES):
            b = group[xxhash.xxh3_64_intdigest(key, seed=salt) % len(group)]
            if id(b) in available:
                return b
        return self.fallback.pick(now, candidates, ctx)


ALGORITHMS = (
    "round_robin",
    "weighted_round_robin",
    "least_connections",
    "least_response_time",
    "least_request",
    "geo_proximity",
    "ip_hash",
)


@dataclass(slots=True)
class AlgorithmFactory:
    """Makes a fresh algorithm instance (one per group of backends)."""

    name: str
    rng: random.Random
    slow_start: SlowStart = field(default_factory=SlowStart)
    distances: Distances = field(default_factory=lambda: Distances({}))

    def __post_init__(self) -> None:
        if self.name not in ALGORITHMS:
            raise ValueError(f"algorithm: one of {', '.join(ALGORITHMS)}, not {self.name!r}")

    def __call__(self) -> Algorithm:
        makers: dict[str, Callable[[], Algorithm]] = {
            "round_robin": RoundRobin,
            "weighted_round_robin": lambda: SmoothWeightedRoundRobin(self.slow_start),
            "least_connections": lambda: LeastConnections(self.slow_start),
            "least_response_time": lambda: LeastResponseTime(self.slow_start),
            "least_request": lambda: PowerOfTwoChoices(self.rng, self.slow_start),
            "geo_proximity": lambda: GeoProximity(
                self.distances, PowerOfTwoChoices(self.rng, self.slow_start)
            ),
            "ip_hash": IPHash,
        }
        return makers[self.name]()
