"""Distances for geo proximity: great-circle (haversine) between points, or network
coordinates when a provider supplies them.

A :class:`Coordinates` provider (the DWCP agent's Vivaldi coordinates, later) estimates
the round-trip time between two named places; when it knows both, its estimate wins over
geography, because what a client feels is latency, not kilometres. Distances from either
source are only ever compared with each other, never mixed in one comparison: a request
is ranked by coordinates when the provider knows every candidate, by haversine otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

EARTH_RADIUS_KM = 6371.0088  # IUGG mean radius


@dataclass(frozen=True, slots=True)
class GeoPoint:
    lat: float
    lon: float

    def __post_init__(self) -> None:
        if not (-90.0 <= self.lat <= 90.0) or not (-180.0 <= self.lon <= 180.0):
            raise ValueError(f"latitude in [-90, 90] and longitude in [-180, 180]: {self}")

    @classmethod
    def parse(cls, text: str) -> GeoPoint:
        """``"lat,lon"`` in degrees (what ``X-Client-Location`` carries)."""
        lat, sep, lon = text.partition(",")
        if not sep:
            raise ValueError("expected 'lat,lon' in degrees")
        try:
            return cls(float(lat), float(lon))
        except ValueError:
            raise ValueError("expected 'lat,lon' in degrees") from None


def haversine_km(a: GeoPoint, b: GeoPoint) -> float:
    """Great-circle distance in km (the haversine form stays accurate for short distances,
    where the spherical law of cosines loses precision)."""
    p1, p2 = math.radians(a.lat), math.radians(b.lat)
    dp = p2 - p1
    dl = math.radians(b.lon - a.lon)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))


class Coordinates(Protocol):
    """Network coordinates (e.g. Vivaldi): the estimated RTT in ms between two places
    (region names, or ``"client:<ip>"``), or None when either one is unknown."""

    def rtt_ms(self, a: str, b: str) -> float | None: ...


class NoCoordinates:
    """No provider: every estimate is unknown, so geography decides."""

    def rtt_ms(self, a: str, b: str) -> float | None:
        return None


@dataclass(frozen=True, slots=True)
class StaticCoordinates:
    """Fixed RTTs between regions (e.g. a measured matrix); symmetric; 0 to itself."""

    rtt: Mapping[tuple[str, str], float]

    def rtt_ms(self, a: str, b: str) -> float | None:
        if a == b:
            return 0.0
        return self.rtt.get((a, b), self.rtt.get((b, a)))


# Approximate locations of common cloud regions (the data centre's metro area), so that a
# config naming only a region still ranks by geography. A config's explicit location wins.
KNOWN_REGIONS: dict[str, GeoPoint] = {
    # Google Cloud
    "us-east1": GeoPoint(33.196, -80.013),  # Moncks Corner, South Carolina
    "us-east4": GeoPoint(39.044, -77.487),  # Ashburn, Virginia
    "us-central1": GeoPoint(41.262, -95.861),  # Council Bluffs, Iowa
    "us-west1": GeoPoint(45.601, -121.184),  # The Dalles, Oregon
    "us-west2": GeoPoint(34.052, -118.244),  # Los Angeles
    "europe-west1": GeoPoint(50.449, 3.818),  # St. Ghislain, Belgium
    "europe-west2": GeoPoint(51.507, -0.128),  # London
    "europe-west3": GeoPoint(50.110, 8.682),  # Frankfurt
    "europe-west4": GeoPoint(53.439, 6.836),  # Eemshaven, Netherlands
    "asia-east1": GeoPoint(24.052, 120.516),  # Changhua County, Taiwan
    "asia-northeast1": GeoPoint(35.690, 139.692),  # Tokyo
    "asia-southeast1": GeoPoint(1.352, 103.820),  # Singapore
    "australia-southeast1": GeoPoint(-33.869, 151.209),  # Sydney
    # AWS
    "us-east-1": GeoPoint(38.944, -77.456),  # N. Virginia
    "us-east-2": GeoPoint(39.962, -83.000),  # Ohio
    "us-west-2": GeoPoint(45.840, -119.700),  # Oregon
    "eu-west-1": GeoPoint(53.350, -6.260),  # Dublin
    "eu-central-1": GeoPoint(50.110, 8.682),  # Frankfurt
    "ap-southeast-1": GeoPoint(1.352, 103.820),  # Singapore
    "ap-northeast-1": GeoPoint(35.690, 139.692),  # Tokyo
}


@dataclass(frozen=True, slots=True)
class Distances:
    """Ranks places by distance: network coordinates when known for every candidate,
    haversine between locations otherwise (unknown locations sort last)."""

    locations: Mapping[str, GeoPoint]
    coordinates: Coordinates = field(default_factory=NoCoordinates)

    def location(self, region: str) -> GeoPoint | None:
        return self.locations.get(region) or KNOWN_REGIONS.get(region)

    def rank(
        self, origin_region: str | None, origin: GeoPoint | None, places: list[str]
    ) -> list[str]:
        """``places`` nearest first from the origin (a region, a point, or both: the
        point wins for geography, the region for coordinates). Stable for ties."""
        if origin_region is not None:
            rtts = [self.coordinates.rtt_ms(origin_region, p) for p in places]
            if all(r is not None for r in rtts):
                order = sorted(range(len(places)), key=lambda i: rtts[i])  # type: ignore[arg-type,return-value]
                return [places[i] for i in order]
        point = origin or (self.location(origin_region) if origin_region else None)
        if point is None:
            # no origin at all: the origin region itself first, the rest as given
            return sorted(places, key=lambda p: p != origin_region)

        def key(p: str) -> tuple[int, float]:
            if p == origin_region and origin is None:
                return (0, 0.0)
            loc = self.location(p)
            return (1, math.inf) if loc is None else (0, haversine_km(point, loc))

        return sorted(places, key=key)
