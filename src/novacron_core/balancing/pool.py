"""The balancer: backends in groups by region and priority, and every decision about them.

One sans-IO composite (see ``machine.py`` for the idea): the process reports events with
the time they happened (membership, probe results, a request's end) and asks questions
(where does this request go, what to probe, when to wake up); nothing here touches a
socket or the clock.

Where a request goes, in order:

1. *Levels*: the groups it may use, best first. A request bound to a region (``strict``)
   uses only that region. Otherwise: groups are ordered by static priority, then by the
   distance of their region from the request's origin (its region, or the client's
   location), as Envoy orders priority levels and localities.
2. *Spill-over* (Envoy's priority load): level i can take ``min(100%, 1.4 x its healthy
   share)`` of the traffic (the overprovisioning factor: a region at 75% health still
   takes everything, one at 50% takes 70% and spills 30% to the next level). The level is
   drawn at random with those weights (or by the affinity key's hash, so a key sticks).
3. *Panic*: when the levels' total health is below ``panic_threshold`` the health checks
   themselves are suspect (too few healthy to be believed), so the drawn level uses all of
   its backends, healthy or not, except those *known* down (refused connections) and
   draining ones, as Envoy does. A retry never goes back to a backend it already tried.
4. *Within the level*: the region's leader for writes when known and available, else the
   session-affinity hash (ring or Maglev) when the request has a key, else the algorithm.

Each acquired request must be released once: ``acquire`` takes a ticket (counters,
circuit-breaker trials, limits), ``release`` returns it with the outcome, which feeds the
response-time EWMA, outlier detection and the breaker.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from novacron_core.balancing.algorithms import Algorithm, AlgorithmFactory
from novacron_core.balancing.backend import Backend
from novacron_core.balancing.circuit import Breaker, BreakerState, Limits
from novacron_core.balancing.geo import Distances
from novacron_core.balancing.hashing import HashRing, Maglev, key_hash, prime_at_least
from novacron_core.balancing.health import HealthChecker, Verdict
from novacron_core.balancing.model import (
    Affinity,
    BackendSpec,
    Choice,
    Gone,
    PoolSpec,
    Refusal,
    Request,
)
from novacron_core.balancing.outlier import Outcome, OutlierDetector

__all__ = [
    "Affinity",
    "BackendSpec",
    "Balancer",
    "Choice",
    "Gone",
    "PoolSpec",
    "Refusal",
    "Request",
]


@dataclass(slots=True)
class _Plan:
    levels: list[_Group]
    stamp: tuple[int, ...] | None
    loads: list[float]
    panic: bool


@dataclass(slots=True)
class _Group:
    region: str
    priority: int
    algorithm: Algorithm
    backends: dict[str, Backend] = field(default_factory=dict)
    version: int = 0
    cached_version: int = -1
    available: list[Backend] = field(default_factory=list)
    members: list[Backend] = field(default_factory=list)
    usable_in_panic: list[Backend] = field(default_factory=list)
    hashers: dict[tuple[str, ...], HashRing | Maglev] = field(default_factory=dict)


class Balancer:
    def __init__(
        self,
        spec: PoolSpec,
        home_region: str,
        distances: Distances | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.spec = spec
        self.home_region = home_region
        self.distances = distances or Distances({})
        self.rng = rng or random.Random(0)
        self.make_algorithm = AlgorithmFactory(
            spec.algorithm, self.rng, spec.slow_start, self.distances
        )
        self.health = HealthChecker(spec.health)
        self.outlier = OutlierDetector(spec.outlier)
        self.groups: dict[tuple[str, int], _Group] = {}
        self.by_id: dict[str, Backend] = {}
        self.breakers: dict[str, Breaker] = {}
        self.limits: dict[str, Limits] = {}
        self.leaders: dict[str, str | None] = {}
        self._gone: list[Gone] = []
        self._rank_cache: dict[str, list[str]] = {}
        # per (strict, region): the levels, and their loads as of the groups' versions
        self._plans: dict[tuple[bool, str | None], _Plan] = {}
        self.panics = 0

    # ------------------------------------------------------------ membership

    def regions(self) -> list[str]:
        return sorted({g.region for g in self.groups.values()})

    def set_members(self, now: float, region: str, specs: Iterable[BackendSpec]) -> None:
        """The region's backends are now ``specs``: new ones join (probed at once, slow
        start from now), changed ones are updated, missing ones start draining."""
        wanted = {s.id: s for s in specs}
        for s in wanted.values():
            if s.region != region:
                raise ValueError(f"backend {s.id} is in region {s.region}, not {region}")
        self.limits.setdefault(region, Limits(self.spec.circuit))
        self._rank_cache.clear()
        self._plans.clear()
        for s in wanted.values():
            b = self.by_id.get(s.id)
            if b is not None and b.priority != s.priority:
                self._group_of(b).backends.pop(b.id, None)
                self._touch(b)
                b.priority = s.priority
                self._group(region, s.priority).backends[b.id] = b
            if b is None:
                b = Backend(s.id, s.host, s.port, region, s.zone, s.weight, s.priority)
                b.location, b.since = s.location, now
                b.healthy = not self.health.active
                self.by_id[s.id] = b
                self.breakers[s.id] = Breaker(self.spec.circuit)
                self.health.add(now, s.id)
                self._group(region, s.priority).backends[s.id] = b
            else:
                b.host, b.port, b.zone, b.weight, b.location = (
                    s.host,
                    s.port,
                    s.zone,
                    s.weight,
                    s.location,
                )
                if b.draining:
                    b.draining, b.drain_deadline = False, math.inf
            self._touch(b)
        for g in [g for g in self.groups.values() if g.region == region]:
            for b in list(g.backends.values()):
                if b.id not in wanted and not b.draining:
                    b.draining = True
                    b.drain_deadline = now + self.spec.drain_timeout_s
                    self._touch(b)
                    if b.active == 0:
                        self._remove(b, aborted=False)
        if self.leaders.get(region) not in self.by_id:
            self.leaders[region] = None

    def set_leader(self, region: str, backend_id: str | None) -> None:
        self.leaders[region] = backend_id if backend_id in self.by_id else None

    def take_gone(self) -> list[Gone]:
        gone, self._gone = self._gone, []
        return gone

    def _group(self, region: str, priority: int) -> _Group:
        g = self.groups.get((region, priority))
        if g is None:
            g = self.groups[(region, priority)] = _Group(region, priority, self.make_algorithm())
        return g

    def _group_of(self, b: Backend) -> _Group:
        return self.groups[(b.region, b.priority)]

    def _touch(self, b: Backend) -> None:
        g = self.groups.get((b.region, b.priority))
        if g is not None:
            g.version += 1

    def _remove(self, b: Backend, aborted: bool) -> None:
        g = self._group_of(b)
        g.backends.pop(b.id, None)
        g.version += 1
        if not g.backends:
            del self.groups[(b.region, b.priority)]
            self._rank_cache.clear()
            self._plans.clear()
        self.by_id.pop(b.id, None)
        self.breakers.pop(b.id, None)
        self.health.remove(b.id)
        self.outlier.remove(b.id)
        if self.leaders.get(b.region) == b.id:
            self.leaders[b.region] = None
        self._gone.append(Gone(b, aborted, b.active))

    # ------------------------------------------------------------ availability

    def _refresh(self, g: _Group) -> None:
        if g.cached_version == g.version:
            return
        g.cached_version = g.version
        avail, usable = [], []
        for b in g.backends.values():
            if b.draining or self.health.known_down(b.id):
                continue
            usable.append(b)
            breaker = self.breakers[b.id]
            b.circuit_open = not breaker.allows()
            if b.healthy and b.ejected_until == 0.0 and not b.circuit_open:
                avail.append(b)
        g.available, g.usable_in_panic = avail, usable
        g.members = list(g.backends.values())

    def _levels(self, req: Request) -> list[_Group]:
        if req.strict:
            region = req.region if req.region is not None else self.home_region
            return sorted(
                (g for g in self.groups.values() if g.region == region), key=lambda g: g.priority
            )
        origin = req.region
        if origin is None and req.ctx.client_location is None:
            origin = self.home_region
        if req.ctx.client_location is None and origin is not None:
            order = self._rank_cache.get(origin)
            if order is None:
                order = self.distances.rank(origin, None, self.regions())
                self._rank_cache[origin] = order
        else:
            order = self.distances.rank(origin, req.ctx.client_location, self.regions())
        rank = {r: i for i, r in enumerate(order)}
        return sorted(self.groups.values(), key=lambda g: (g.priority, rank.get(g.region, 1 << 30)))

    def priority_loads(self, levels: Sequence[_Group]) -> tuple[list[float], bool]:
        """Envoy's priority load: each level's share of traffic (percent) and panic."""
        opf = self.spec.overprovisioning
        health = []
        for g in levels:
            self._refresh(g)
            total = len(g.backends) - sum(1 for b in g.backends.values() if b.draining)
            share = len(g.available) / total if total > 0 else 0.0
            health.append(min(100.0, opf * 100.0 * share))
        total_health = min(100.0, sum(health))
        panic = total_health < self.spec.panic_threshold
        if total_health == 0:
            return [100.0] + [0.0] * (len(levels) - 1), panic
        loads, remaining = [], 100.0
        for h in health:
            load = min(remaining, h * 100.0 / total_health)
            loads.append(load)
            remaining -= load
        return loads, panic

    # ------------------------------------------------------------ the decision

    def _plan(self, req: Request) -> _Plan:
        if req.ctx.client_location is not None:
            levels = self._levels(req)
            return _Plan(levels, (), *self.priority_loads(levels))
        key = (req.strict, req.region)
        plan = self._plans.get(key)
        if plan is None:
            plan = self._plans[key] = _Plan(self._levels(req), None, [], False)
        levels = plan.levels
        stamp = (levels[0].version,) if len(levels) == 1 else tuple(g.version for g in levels)
        if plan.stamp != stamp:
            plan.loads, plan.panic = self.priority_loads(plan.levels)
            plan.stamp = stamp
        return plan

    def acquire(self, now: float, req: Request) -> Choice | Refusal:
        plan = self._plan(req)
        levels, loads, panic = plan.levels, plan.loads, plan.panic
        if not levels:
            where = f"region {req.region}" if req.strict else "any region"
            return Refusal(f"no backends known in {where}", 1.0)
        if panic:
            self.panics += 1
        if len(levels) == 1:
            order: list[int] | tuple[int] = (0,)
        else:
            if req.affinity_key is not None and self.spec.affinity != "none":
                roll = (key_hash(req.affinity_key) >> 11) % 10_000 / 100.0
            else:
                roll = self.rng.random() * 100.0
            first = len(levels) - 1
            for i, load in enumerate(loads):
                if roll < load:
                    first = i
                    break
                roll -= load
            # the drawn level first, then the others in order (a retry or a full level)
            order = [first, *(i for i in range(len(levels)) if i != first)]
        refusal: Refusal | None = None
        for i in order:
            g = levels[i]
            candidates = g.usable_in_panic if panic else g.available
            if req.exclude:
                candidates = [b for b in candidates if b.id not in req.exclude]
            if not candidates:
                continue
            why = self.limits[g.region].try_request(req.retry)
            if why is not None:
                refusal = Refusal(why, 1.0)
                continue
            b = self._pick(now, g, candidates, req)
            breaker = self.breakers[b.id]
            trial = breaker.state is BreakerState.HALF_OPEN
            if trial:
                breaker.on_start()
                g.version += 1  # its trial slots may now be full
            b.active += 1
            b.requests += 1
            b.last_sent = now
            return Choice(b, g.region, i, panic, req.retry, trial)
        if refusal is not None:
            return refusal
        where = f"region {req.region}" if req.strict else "any region"
        tried = f" (tried {len(req.exclude)})" if req.exclude else ""
        return Refusal(f"no available backend in {where}{tried}", 1.0)

    def _pick(self, now: float, g: _Group, candidates: list[Backend], req: Request) -> Backend:
        if req.write:
            leader = self.leaders.get(g.region)
            if leader is not None:
                for b in candidates:
                    if b.id == leader:
                        return b
        if req.affinity_key is not None and self.spec.affinity != "none":
            ids = tuple(sorted(b.id for b in candidates))
            hasher = g.hashers.get(ids)
            if hasher is None:
                hasher = self._hasher(ids, {b.id: b.weight for b in candidates})
                if len(g.hashers) >= 8:
                    g.hashers.pop(next(iter(g.hashers)))
                g.hashers[ids] = hasher
            target = hasher.lookup_hash(key_hash(req.affinity_key))
            for b in candidates:
                if b.id == target:
                    return b
        req.ctx.group = g.members
        return g.algorithm.pick(now, candidates, req.ctx)

    def _hasher(self, ids: tuple[str, ...], weights: dict[str, int]) -> HashRing | Maglev:
        if self.spec.affinity == "ring":
            return HashRing(weights, self.spec.vnodes)
        size = self.spec.maglev_size or prime_at_least(max(4099, 100 * len(ids)))
        return Maglev(weights, size)

    def cancel(self, choice: Choice) -> None:
        """Give back a ticket that was never used (nothing was sent): the counters it
        took, and nothing else (no outcome, no latency)."""
        if choice.released:
            raise RuntimeError(f"request to {choice.backend.id} released twice")
        choice.released = True
        b = choice.backend
        b.active = max(0, b.active - 1)
        limits = self.limits.get(choice.region)
        if limits is not None:
            limits.done(choice.retry)
        if choice.trial and b.id in self.breakers:
            self.breakers[b.id].trials = max(0, self.breakers[b.id].trials - 1)
            self._touch(b)
        if b.draining and b.active == 0 and b.id in self.by_id:
            self._remove(b, aborted=False)

    def release(self, now: float, choice: Choice, outcome: Outcome, latency_s: float) -> None:
        if choice.released:
            raise RuntimeError(f"request to {choice.backend.id} released twice")
        choice.released = True
        b = choice.backend
        b.active = max(0, b.active - 1)
        limits = self.limits.get(choice.region)
        if limits is not None:
            limits.done(choice.retry)
        if b.id not in self.by_id:
            return  # removed meanwhile (drain deadline)
        if outcome is Outcome.SUCCESS and not choice.trial and not b.draining:
            # the common case, kept short: EWMA, the breaker's window, outlier counts reset
            b.observe_latency(now, latency_s, self.spec.ewma_tau_s)
            if self.breakers[b.id].on_result(now, False):
                self._touch(b)
            self.outlier.success(b.id)
            return
        g = self._group_of(b)
        if outcome is not Outcome.REFUSED and outcome is not Outcome.GATEWAY_FAILURE:
            b.observe_latency(now, latency_s, self.spec.ewma_tau_s)
        failed = outcome in (Outcome.SERVER_ERROR, Outcome.GATEWAY_FAILURE, Outcome.REFUSED)
        breaker = self.breakers[b.id]
        if breaker.on_result(now, failed, counted=outcome is not Outcome.NEUTRAL) or choice.trial:
            g.version += 1
        if outcome is Outcome.REFUSED and self.health.passive_refused(now, b.id):
            self._health_changed(now, b)
        ejected = 0
        if failed:  # only a failure can eject: count the group's ejected ones then
            ejected = sum(1 for x in g.backends.values() if x.ejected_until > 0)
        until = self.outlier.record(now, b.id, outcome, len(g.backends), ejected)
        if until is not None:
            b.ejected_until = until
            b.ejections += 1
            g.version += 1
        if b.draining and b.active == 0:
            self._remove(b, aborted=False)

    # ------------------------------------------------------------ health and time

    def probes_due(self, now: float) -> list[Backend]:
        return [self.by_id[i] for i in self.health.due(now) if i in self.by_id]

    def probe_result(self, now: float, backend_id: str, verdict: Verdict, detail: str = "") -> None:
        b = self.by_id.get(backend_id)
        if b is not None and self.health.result(now, backend_id, verdict, detail):
            self._health_changed(now, b)

    def hint_down(self, now: float, backend_id: str) -> None:
        """Passive hint: an idle connection to it closed by the far side. Probe it now."""
        self.health.nudge(now, backend_id)

    def _health_changed(self, now: float, b: Backend) -> None:
        was = b.healthy
        b.healthy = self.health.healthy(b.id)
        if b.healthy and not was:
            b.since = now  # slow start again after coming back
        self._touch(b)

    def on_tick(self, now: float) -> float | None:
        """Advance timers (ejections ending, breakers half-opening, drain deadlines);
        returns when to call again (None: only on the next event)."""
        for bid in self.outlier.expire(now):
            b = self.by_id.get(bid)
            if b is not None:
                b.ejected_until = 0.0
                b.since = now
                self._touch(b)
        wakes: list[float] = []
        for bid, breaker in self.breakers.items():
            if breaker.on_tick(now):
                self._touch(self.by_id[bid])
            if breaker.state is BreakerState.OPEN:
                wakes.append(breaker.open_until)
        for b in list(self.by_id.values()):
            if b.draining:
                if now >= b.drain_deadline:
                    self._remove(b, aborted=b.active > 0)
                else:
                    wakes.append(b.drain_deadline)
        for t in (self.outlier.next_expiry(), self.health.next_due()):
            if t is not None:
                wakes.append(t)
        return min(wakes) if wakes else None

    # ------------------------------------------------------------ reporting

    def describe(self, now: float) -> list[dict[str, object]]:
        out: list[dict[str, object]] = []
        for b in sorted(self.by_id.values(), key=lambda b: (b.region, b.priority, b.id)):
            g = self._group_of(b)
            self._refresh(g)
            breaker = self.breakers[b.id]
            out.append(
                {
                    "id": b.id,
                    "address": b.address,
                    "region": b.region,
                    "zone": b.zone,
                    "priority": b.priority,
                    "weight": b.weight,
                    "available": b in g.available,
                    "leader": self.leaders.get(b.region) == b.id,
                    "draining": b.draining,
                    "circuit": breaker.state.value,
                    "active": b.active,
                    "requests": b.requests,
                    "ewma_ms": None if math.isnan(b.ewma_s) else round(b.ewma_s * 1000, 3),
                    "slow_start_factor": round(self.spec.slow_start.factor(now - b.since), 3),
                    "last_sent_monotonic": None if math.isinf(b.last_sent) else b.last_sent,
                    **self.health.describe(b.id),
                    **self.outlier.describe(b.id, now),
                }
            )
        return out

    def region_health(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for g in self.groups.values():
            self._refresh(g)
            r = out.setdefault(g.region, {"backends": 0, "available": 0})
            r["backends"] += len(g.backends)
            r["available"] += len(g.available)
        return out
