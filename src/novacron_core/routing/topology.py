"""The live network: regions (with geo coordinates and zones), members, and the links between
members with their measured latency, jitter, bandwidth, loss, cost and state.

Sans-IO: measurements come in with the time they were taken (``now``, seconds on the caller's
clock); nothing here reads a clock. Latency and jitter are smoothed the way TCP smooths its
RTT (RFC 6298: ``srtt`` and ``rttvar`` with gains 1/8 and 1/4), loss and bandwidth by an
exponentially weighted moving average. ``version`` moves whenever routing could change: a link
appears, goes down or comes up, or a metric drifts more than ``significant`` (relative) from
the value the last route computation saw, so a background recomputation knows when it is due
without recomputing on every probe.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

# Light in fibre covers ~200 km per ms; real routes are longer than great circles.
FIBRE_KM_PER_MS = 200.0
EARTH_RADIUS_KM = 6371.0


@dataclass(frozen=True, slots=True)
class Region:
    name: str
    latitude: float | None = None
    longitude: float | None = None
    zones: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Member:
    """One routing node (an agent): it belongs to a region and may sit in one of its zones."""

    name: str
    region: str
    zone: str = ""
    address: str = ""


def link_key(a: str, b: str) -> tuple[str, str]:
    """Links are undirected (full duplex, measured by round trips): one key per pair."""
    return (a, b) if a <= b else (b, a)


@dataclass(slots=True)
class Link:
    a: str
    b: str
    latency_ms: float  # one way (half the smoothed RTT)
    bandwidth_mbps: float = 1000.0
    jitter_ms: float = 0.0  # RFC 6298 rttvar of the RTT samples
    loss: float = 0.0  # fraction of probes lost, smoothed
    cost: float = 1.0  # administrative / monetary cost of carrying traffic on it
    up: bool = True
    changed_at: float = 0.0  # when ``up`` last flipped
    samples: int = 0  # RTT samples seen (0: the latency is configured or estimated)

    @property
    def key(self) -> tuple[str, str]:
        return link_key(self.a, self.b)

    @property
    def rtt_ms(self) -> float:
        return 2.0 * self.latency_ms

    def other(self, node: str) -> str:
        return self.b if node == self.a else self.a

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["rtt_ms"] = self.rtt_ms
        return d


@dataclass(frozen=True, slots=True)
class Smoothing:
    rtt_gain: float = 1 / 8  # RFC 6298 alpha
    var_gain: float = 1 / 4  # RFC 6298 beta
    loss_gain: float = 1 / 16
    bandwidth_gain: float = 1 / 4
    significant: float = 0.1  # relative drift of a metric that makes routes stale


class TopologyError(ValueError):
    pass


@dataclass
class Topology:
    smoothing: Smoothing = field(default_factory=Smoothing)
    regions: dict[str, Region] = field(default_factory=dict)
    members: dict[str, Member] = field(default_factory=dict)
    _links: dict[tuple[str, str], Link] = field(default_factory=dict)
    # the metric values the current routes were computed from (drift is measured against it)
    _routed: dict[tuple[str, str], tuple[float, float, float, float]] = field(default_factory=dict)
    version: int = 0

    # ------------------------------------------------------------------ structure

    def add_region(self, region: Region) -> None:
        if self.regions.get(region.name) != region:
            self.regions[region.name] = region
            self.version += 1

    def add_member(self, member: Member) -> None:
        if member.region not in self.regions:
            self.add_region(Region(member.region))
        if self.members.get(member.name) != member:
            self.members[member.name] = member
            self.version += 1

    def ensure_member(self, name: str, region: str | None = None) -> Member:
        m = self.members.get(name)
        if m is None:
            m = Member(name, region or name)
            self.add_member(m)
        return m

    def add_link(
        self,
        a: str,
        b: str,
        latency_ms: float | None = None,
        *,
        bandwidth_mbps: float = 1000.0,
        cost: float = 1.0,
        jitter_ms: float = 0.0,
        loss: float = 0.0,
        up: bool = True,
        now: float = 0.0,
    ) -> Link:
        """Add (or replace the configuration of) the link a-b. Without a latency, one is
        estimated from the regions' coordinates (needs both)."""
        if a == b:
            raise TopologyError(f"link {a}-{b}: a link joins two different members")
        for n in (a, b):
            self.ensure_member(n)
        if latency_ms is None:
            latency_ms = self.geo_latency_ms(a, b)
        _check_metric("latency_ms", latency_ms, a, b)
        _check_metric("bandwidth_mbps", bandwidth_mbps, a, b)
        _check_metric("cost", cost, a, b)
        if not 0.0 <= loss <= 1.0:
            raise TopologyError(f"link {a}-{b}: loss must be within 0..1, not {loss}")
        ka, kb = link_key(a, b)
        link = Link(ka, kb, latency_ms, bandwidth_mbps, jitter_ms, loss, cost, up, now)
        self._links[link.key] = link
        self.version += 1
        return link

    def remove_link(self, a: str, b: str) -> None:
        if self._links.pop(link_key(a, b), None) is not None:
            self.version += 1

    def link(self, a: str, b: str) -> Link | None:
        return self._links.get(link_key(a, b))

    def links(self) -> Iterator[Link]:
        return iter(self._links.values())

    def up_links(self) -> Iterator[Link]:
        return (link for link in self._links.values() if link.up)

    def nodes(self) -> list[str]:
        return sorted(self.members)

    # ------------------------------------------------------------------ measurements

    def observe_rtt(self, a: str, b: str, rtt_ms: float, now: float) -> Link:
        """One round-trip sample on a-b: smooths latency and jitter, and (a reply came back)
        brings the link up."""
        _check_metric("rtt_ms", rtt_ms, a, b, allow_zero=True)
        link = self._links.get(link_key(a, b)) or self.add_link(a, b, rtt_ms / 2, now=now)
        s = self.smoothing
        if link.samples == 0:
            link.latency_ms, link.jitter_ms = rtt_ms / 2, rtt_ms / 4  # RFC 6298 (2.2)
        else:
            srtt = link.rtt_ms
            link.jitter_ms = (1 - s.var_gain) * link.jitter_ms + s.var_gain * abs(srtt - rtt_ms)
            link.latency_ms = ((1 - s.rtt_gain) * srtt + s.rtt_gain * rtt_ms) / 2
        link.samples += 1
        self.observe_loss(a, b, False, now)
        if not link.up:
            self.set_up(a, b, True, now)
        self._drifted(link)
        return link

    def observe_loss(self, a: str, b: str, lost: bool, now: float) -> None:
        link = self._links.get(link_key(a, b))
        if link is None:
            return
        g = self.smoothing.loss_gain
        link.loss = (1 - g) * link.loss + g * (1.0 if lost else 0.0)
        self._drifted(link)

    def observe_bandwidth(self, a: str, b: str, mbps: float, now: float) -> None:
        """A transfer sample (bytes over time of a bulk transfer, in Mbit/s)."""
        _check_metric("bandwidth_mbps", mbps, a, b)
        link = self._links.get(link_key(a, b)) or self.add_link(a, b, None, now=now)
        g = self.smoothing.bandwidth_gain
        link.bandwidth_mbps = (1 - g) * link.bandwidth_mbps + g * mbps
        self._drifted(link)

    def set_up(self, a: str, b: str, up: bool, now: float) -> bool:
        """Mark a-b up or down; True if that changed anything."""
        link = self._links.get(link_key(a, b))
        if link is None or link.up == up:
            return False
        link.up, link.changed_at = up, now
        self.version += 1
        return True

    def mark_routed(self) -> int:
        """The routes are being computed from the metrics as they are now: drift is measured
        from here on. Returns the version those routes reflect."""
        self._routed = {k: _metrics(link) for k, link in self._links.items()}
        return self.version

    def _drifted(self, link: Link) -> None:
        before = self._routed.get(link.key)
        if before is None:
            return
        rel = self.smoothing.significant
        for old, new in zip(before, _metrics(link), strict=True):
            if abs(new - old) > rel * max(abs(old), 1e-3):
                self._routed[link.key] = _metrics(link)
                self.version += 1
                return

    # ------------------------------------------------------------------ geography

    def geo_latency_ms(self, a: str, b: str) -> float:
        """One-way latency estimated from the two members' regions' coordinates."""
        ra = self.regions.get(self.ensure_member(a).region)
        rb = self.regions.get(self.ensure_member(b).region)
        if ra is None or rb is None or None in (ra.latitude, ra.longitude, rb.latitude):
            raise TopologyError(
                f"link {a}-{b}: no latency_ms given and no coordinates to estimate one from"
            )
        assert ra.latitude is not None
        assert ra.longitude is not None
        assert rb.latitude is not None
        assert rb.longitude is not None
        km = haversine_km(ra.latitude, ra.longitude, rb.latitude, rb.longitude)
        return max(km / FIBRE_KM_PER_MS, 0.05)

    # ------------------------------------------------------------------ views

    def as_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "regions": [asdict(r) for r in sorted(self.regions.values(), key=lambda r: r.name)],
            "members": [asdict(m) for m in sorted(self.members.values(), key=lambda m: m.name)],
            "links": [link.as_dict() for _, link in sorted(self._links.items())],
        }

    @classmethod
    def from_links(cls, links: Iterable[tuple[str, str, float]], **kw: Any) -> Topology:
        topo = cls(**kw)
        for a, b, latency in links:
            topo.add_link(a, b, latency)
        return topo


def _metrics(link: Link) -> tuple[float, float, float, float]:
    return (link.latency_ms, link.bandwidth_mbps, link.loss, link.cost)


def _check_metric(name: str, value: float, a: str, b: str, allow_zero: bool = True) -> None:
    if not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise TopologyError(f"link {a}-{b}: {name} must be a finite number >= 0, not {value!r}")
    if not allow_zero and value == 0:
        raise TopologyError(f"link {a}-{b}: {name} must be > 0")


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))
