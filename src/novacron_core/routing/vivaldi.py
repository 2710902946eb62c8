"""Vivaldi network coordinates, as HashiCorp Serf (and so Consul) implement them.

Each member keeps a coordinate in an 8-dimensional Euclidean space plus a *height* (the
access-link delay every path from it pays) and an *adjustment* (the mean residual of recent
samples); the RTT between two members is estimated as the distance between their
coordinates, without probing that pair. Every RTT sample to a peer (whose coordinate came with
the reply) moves ours like a spring (Dabek et al., "Vivaldi: A Decentralized Network
Coordinate System", SIGCOMM 2004), with the paper's adaptive timestep: the move is scaled by
our confidence relative to the peer's. Serf's refinements are kept: a median filter of the
last 3 samples per peer, heights, the adjustment window of 20 samples and a weak gravity
toward the origin so the coordinates do not drift away together.

Sans-IO and deterministic: samples and the random source come in as arguments. Units are
seconds inside (Serf's constants assume them) and milliseconds at the API edge.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

ZERO = 1.0e-6


@dataclass(frozen=True)
class VivaldiConfig:
    dimensionality: int = 8
    error_max: float = 1.5
    ce: float = 0.25  # error gain
    cc: float = 0.25  # timestep gain
    adjustment_window: int = 20
    height_min: float = 10.0e-6  # seconds
    latency_filter: int = 3
    gravity_rho: float = 150.0
    max_rtt_s: float = 10.0


@dataclass(frozen=True)
class Coordinate:
    vec: tuple[float, ...]
    error: float
    adjustment: float
    height: float

    @classmethod
    def origin(cls, config: VivaldiConfig) -> Coordinate:
        return cls((0.0,) * config.dimensionality, config.error_max, 0.0, config.height_min)

    def raw_distance_s(self, other: Coordinate) -> float:
        return _mag(_diff(self.vec, other.vec)) + self.height + other.height

    def distance_s(self, other: Coordinate) -> float:
        dist = self.raw_distance_s(other)
        adjusted = dist + self.adjustment + other.adjustment
        return adjusted if adjusted > 0 else dist

    def rtt_ms(self, other: Coordinate) -> float:
        return 1000.0 * self.distance_s(other)

    def valid(self) -> bool:
        nums = (*self.vec, self.error, self.adjustment, self.height)
        return all(math.isfinite(x) for x in nums)

    def compatible(self, other: Coordinate) -> bool:
        return len(self.vec) == len(other.vec)

    def as_dict(self) -> dict[str, Any]:
        return {
            "vec": list(self.vec),
            "error": self.error,
            "adjustment": self.adjustment,
            "height": self.height,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Coordinate:
        return cls(
            tuple(float(x) for x in d["vec"]),
            float(d["error"]),
            float(d["adjustment"]),
            float(d["height"]),
        )

    def apply_force(
        self, config: VivaldiConfig, force: float, other: Coordinate, rng: random.Random
    ) -> Coordinate:
        unit, mag = _unit_vector_at(self.vec, other.vec, rng)
        vec = tuple(x + u * force for x, u in zip(self.vec, unit, strict=True))
        height = self.height
        if mag > ZERO:
            height = (height + other.height) * force / mag + height
            height = max(height, config.height_min)
        return Coordinate(vec, self.error, self.adjustment, height)


class VivaldiClient:
    """One member's coordinate, moved by each RTT sample to a peer."""

    def __init__(self, config: VivaldiConfig | None = None, rng: random.Random | None = None):
        self.config = config or VivaldiConfig()
        self.rng = rng or random.Random(0)
        self.coord = Coordinate.origin(self.config)
        self._origin = Coordinate.origin(self.config)
        self._adjust = [0.0] * self.config.adjustment_window
        self._adjust_i = 0
        self._filters: dict[str, list[float]] = {}
        self.resets = 0

    def update(self, peer: str, other: Coordinate, rtt_ms: float) -> Coordinate:
        """A sample: ``rtt_ms`` to ``peer`` whose coordinate is ``other``."""
        cfg = self.config
        if not other.compatible(self.coord) or not other.valid():
            raise ValueError(f"coordinate of {peer}: wrong dimensionality or not finite")
        rtt_s = rtt_ms / 1000.0
        if not 0 <= rtt_s <= cfg.max_rtt_s:
            raise ValueError(f"rtt_ms to {peer} must be within 0..{cfg.max_rtt_s * 1000:g}")
        rtt_s = self._filter(peer, rtt_s)
        self._vivaldi(other, rtt_s)
        self._adjustment(other, rtt_s)
        self._gravity()
        if not self.coord.valid():
            self.resets += 1
            self.coord = Coordinate.origin(cfg)
        return self.coord

    def forget(self, peer: str) -> None:
        self._filters.pop(peer, None)

    def _filter(self, peer: str, rtt_s: float) -> float:
        samples = self._filters.setdefault(peer, [])
        samples.append(rtt_s)
        if len(samples) > self.config.latency_filter:
            samples.pop(0)
        return sorted(samples)[len(samples) // 2]

    def _vivaldi(self, other: Coordinate, rtt_s: float) -> None:
        cfg, c = self.config, self.coord
        dist = c.raw_distance_s(other)
        rtt_s = max(rtt_s, ZERO)
        wrongness = abs(dist - rtt_s) / rtt_s
        total_error = max(c.error + other.error, ZERO)
        weight = c.error / total_error
        error = cfg.ce * weight * wrongness + c.error * (1.0 - cfg.ce * weight)
        error = min(error, cfg.error_max)
        force = cfg.cc * weight * (rtt_s - dist)  # the adaptive timestep
        moved = Coordinate(c.vec, error, c.adjustment, c.height)
        self.coord = moved.apply_force(cfg, force, other, self.rng)

    def _adjustment(self, other: Coordinate, rtt_s: float) -> None:
        window = self.config.adjustment_window
        if window == 0:
            return
        c = self.coord
        self._adjust[self._adjust_i] = rtt_s - c.raw_distance_s(other)
        self._adjust_i = (self._adjust_i + 1) % window
        adj = sum(self._adjust) / (2.0 * window)
        self.coord = Coordinate(c.vec, c.error, adj, c.height)

    def _gravity(self) -> None:
        cfg = self.config
        dist = self._origin.distance_s(self.coord)
        force = -1.0 * (dist / cfg.gravity_rho) ** 2
        self.coord = self.coord.apply_force(cfg, force, self._origin, self.rng)


class Coordinates:
    """What one member knows of everyone's coordinates (its own included): RTT estimates
    between any two members, and the nearest of a set of candidates. This is the shape a
    gateway's ``Coordinates`` dependency takes (``nearest``, ``rtt_ms``)."""

    def __init__(self, me: str, client: VivaldiClient | None = None) -> None:
        self.me = me
        self.client = client or VivaldiClient()
        self.known: dict[str, Coordinate] = {}

    @property
    def mine(self) -> Coordinate:
        return self.client.coord

    def observe(self, peer: str, coord: Coordinate, rtt_ms: float) -> None:
        """A probe reply from ``peer`` carrying its coordinate, ``rtt_ms`` after we sent."""
        self.known[peer] = coord
        self.client.update(peer, coord, rtt_ms)

    def learn(self, peer: str, coord: Coordinate) -> None:
        """A coordinate heard second hand (no RTT sample of ours)."""
        if peer != self.me and coord.valid() and coord.compatible(self.mine):
            self.known[peer] = coord

    def get(self, name: str) -> Coordinate | None:
        return self.mine if name == self.me else self.known.get(name)

    def rtt_ms(self, a: str, b: str | None = None) -> float | None:
        """Estimated RTT a-b (b defaults to this member); None if either is unknown."""
        ca, cb = self.get(a), self.get(b if b is not None else self.me)
        if ca is None or cb is None:
            return None
        return ca.rtt_ms(cb)

    def nearest(self, candidates: Iterable[str], source: str | None = None) -> str | None:
        """The candidate with the least estimated RTT from ``source`` (this member by
        default); candidates without a coordinate come last, in their given order."""
        best: tuple[float, int, str] | None = None
        unknown: str | None = None
        for i, name in enumerate(candidates):
            est = self.rtt_ms(name, source)
            if est is None:
                unknown = unknown or name
                continue
            if best is None or (est, i) < best[:2]:
                best = (est, i, name)
        return best[2] if best is not None else unknown

    def as_dict(self) -> dict[str, Any]:
        return {
            "me": self.me,
            "coordinate": self.mine.as_dict(),
            "known": {n: c.as_dict() for n, c in sorted(self.known.items())},
            "resets": self.client.resets,
        }


class CoordinateSource(Protocol):
    """The interface consumers (the gateway) depend on."""

    def nearest(self, candidates: Iterable[str], source: str | None = None) -> str | None: ...

    def rtt_ms(self, a: str, b: str | None = None) -> float | None: ...


class RegionCoordinates:
    """Region-to-region RTT estimates from member coordinates: the gateway's ``Coordinates``
    provider (``rtt_ms(a, b)`` with region names, None when either is unknown). A region's
    estimate to another is the least over their members' pairs (the nearest agents).

    Build it from the agent's ``GET /v1/coordinates`` body with :meth:`from_api`."""

    def __init__(self, coords: dict[str, Coordinate], regions: dict[str, str]) -> None:
        self.by_region: dict[str, list[Coordinate]] = {}
        for member, c in coords.items():
            self.by_region.setdefault(regions.get(member, member), []).append(c)

    @classmethod
    def from_api(cls, body: dict[str, Any]) -> RegionCoordinates:
        coords = {n: Coordinate.from_dict(c) for n, c in body.get("known", {}).items()}
        coords[body["me"]] = Coordinate.from_dict(body["coordinate"])
        return cls(coords, dict(body.get("regions", {})))

    def rtt_ms(self, a: str, b: str) -> float | None:
        if a == b:
            return 0.0
        ca, cb = self.by_region.get(a), self.by_region.get(b)
        if not ca or not cb:
            return None
        return min(x.rtt_ms(y) for x in ca for y in cb)


def _diff(a: Sequence[float], b: Sequence[float]) -> tuple[float, ...]:
    return tuple(x - y for x, y in zip(a, b, strict=True))


def _mag(v: Sequence[float]) -> float:
    return math.sqrt(sum(x * x for x in v))


def _unit_vector_at(
    a: Sequence[float], b: Sequence[float], rng: random.Random
) -> tuple[tuple[float, ...], float]:
    ret = _diff(a, b)
    mag = _mag(ret)
    if mag > ZERO:
        return tuple(x / mag for x in ret), mag
    # coincident: push in a random direction (Serf does the same)
    for _ in range(8):
        r = tuple(rng.random() - 0.5 for _ in a)
        m = _mag(r)
        if m > ZERO:
            return tuple(x / m for x in r), 0.0
    return (1.0, *(0.0 for _ in a[1:])), 0.0


@dataclass
class VivaldiSim:
    """Drive a set of clients with samples from an RTT matrix (the benchmark and tests)."""

    rtt_ms: dict[tuple[str, str], float]
    jitter: float = 0.1
    seed: int = 0
    nodes: list[str] = field(default_factory=list)

    def names(self) -> list[str]:
        return self.nodes or sorted({n for pair in self.rtt_ms for n in pair})

    def samples(self, rounds: int) -> list[tuple[str, str, float]]:
        """The probe schedule: each round every node samples one random other node, the true
        RTT stretched by up to ``jitter`` (independent of the coordinates, so another
        implementation can replay the very same samples)."""
        rng = random.Random(self.seed)
        names = self.names()
        out = []
        for _ in range(rounds):
            for a in names:
                b = rng.choice([n for n in names if n != a])
                out.append((a, b, self.true_rtt(a, b) * (1 + rng.uniform(0, self.jitter))))
        return out

    def run(self, rounds: int) -> dict[str, Coordinates]:
        names = self.names()
        coords = {
            n: Coordinates(n, VivaldiClient(rng=random.Random(self.seed * 1000 + i)))
            for i, n in enumerate(names)
        }
        for a, b, rtt in self.samples(rounds):
            coords[a].observe(b, coords[b].mine, rtt)
        for a in names:
            for b in names:
                if a != b:
                    coords[a].learn(b, coords[b].mine)
        return coords

    def median_of(self, estimate: dict[tuple[str, str], float]) -> float:
        """Median relative error of an estimate {(a, b): ms} against the true matrix."""
        names = self.names()
        errs = sorted(
            abs(estimate[(a, b)] - self.true_rtt(a, b)) / self.true_rtt(a, b)
            for i, a in enumerate(names)
            for b in names[i + 1 :]
        )
        mid = len(errs) // 2
        return errs[mid] if len(errs) % 2 else (errs[mid - 1] + errs[mid]) / 2

    def true_rtt(self, a: str, b: str) -> float:
        v = self.rtt_ms.get((a, b), self.rtt_ms.get((b, a)))
        if v is None:
            raise KeyError(f"no RTT {a}-{b}")
        return v

    def median_relative_error(self, coords: dict[str, Coordinates]) -> float:
        errs = []
        names = sorted(coords)
        for i, a in enumerate(names):
            for b in names[i + 1 :]:
                est = coords[a].rtt_ms(b)
                assert est is not None
                true = self.true_rtt(a, b)
                errs.append(abs(est - true) / true)
        errs.sort()
        mid = len(errs) // 2
        return errs[mid] if len(errs) % 2 else (errs[mid - 1] + errs[mid]) / 2
