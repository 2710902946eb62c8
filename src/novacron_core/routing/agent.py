"""The DWCP agent's decisions, sans-IO: when to probe which peer, what a reply or a silence
means, the link-state database the agents flood to one another, and the routes on top.

Every ``interval`` each peer gets a :class:`Ping`; a :class:`Pong` gives one RTT sample (and
the peer's Vivaldi coordinate and link-state adverts); a ping unanswered within its timeout
counts as lost, and ``down_after`` losses in a row take the link down, which reroutes at once
from the precomputed backups (:class:`~novacron_core.routing.table.Router`). Each agent
advertises its own measured links (an LSA: origin, sequence number, links) in every ping and
pong, and relays the newest LSA of every other origin it knows round-robin, so each agent
sees the whole mesh (OSPF-style flooding, without acknowledgements: the next message repeats
it). A link is up only while every end that reports on it says so.

Inputs come with ``now`` (seconds, the driver's monotonic clock); outputs are a
:class:`~novacron_core.machine.Ready` whose messages the driver sends (a peer reached over TCP
only, without an agent of its own, gets its ping as a connect and its pong from the driver).
"""

from __future__ import annotations

import collections
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from novacron_core.machine import Ready
from novacron_core.routing.table import RouteChange, Router
from novacron_core.routing.topology import Member, Topology, link_key
from novacron_core.routing.vivaldi import Coordinate, Coordinates

MAX_RELAYED = 4  # other origins' LSAs per message (keeps a ping under ~1.2 KB at 16 members)
EVENTS_KEPT = 256


@dataclass(frozen=True)
class LinkReport:
    peer: str
    rtt_ms: float
    loss: float
    up: bool
    bandwidth_mbps: float


@dataclass(frozen=True)
class LSA:
    origin: str
    region: str
    seq: int
    links: tuple[LinkReport, ...]
    coord: Coordinate | None = None


@dataclass(frozen=True)
class Ping:
    seq: int
    sent: float  # the sender's clock: comes back in the pong
    src: str
    region: str
    coord: Coordinate | None = None
    lsas: tuple[LSA, ...] = ()


@dataclass(frozen=True)
class Pong:
    seq: int
    sent: float
    src: str
    region: str
    coord: Coordinate | None = None
    lsas: tuple[LSA, ...] = ()


@dataclass(frozen=True)
class ProbeConfig:
    interval: float = 0.1  # seconds between pings to one peer
    min_timeout: float = 0.15
    max_timeout: float = 0.6  # 3 losses + this stays under the 1 s reroute target
    down_after: int = 3  # consecutive losses
    lsa_max_age: float = 10.0  # an origin silent this long no longer counts


@dataclass
class PeerState:
    name: str
    region: str
    next_seq: int = 1
    outstanding: dict[int, float] = field(default_factory=dict)
    next_ping: float = 0.0
    lost_in_row: int = 0
    sent: int = 0
    lost: int = 0
    answered: int = 0
    recent: collections.deque[float] = field(default_factory=lambda: collections.deque(maxlen=16))


@dataclass(frozen=True)
class Event:
    at: float
    kind: str  # link-down, link-up, reroute
    detail: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {"at": self.at, "kind": self.kind, **self.detail}


class AgentCore:
    def __init__(
        self,
        name: str,
        region: str,
        peers: Iterable[tuple[str, str]],  # (name, region)
        config: ProbeConfig | None = None,
        coordinates: Coordinates | None = None,
    ) -> None:
        self.name, self.region = name, region
        self.config = config or ProbeConfig()
        self.topology = Topology()
        self.topology.add_member(Member(name, region))
        self.peers: dict[str, PeerState] = {}
        for peer, peer_region in peers:
            if peer == name:
                continue
            self.peers[peer] = PeerState(peer, peer_region)
            self.topology.add_member(Member(peer, peer_region))
        self.router = Router(self.topology, name)
        self.coords = coordinates or Coordinates(name)
        self.lsdb: dict[str, tuple[LSA, float]] = {}  # origin -> (newest LSA, heard at)
        self.own_seq = 0
        self._relay_cursor = 0
        self.events: collections.deque[Event] = collections.deque(maxlen=EVENTS_KEPT)
        self.reroutes = 0

    # ------------------------------------------------------------------ inputs

    def on_start(self, now: float) -> Ready:
        ready = Ready()
        for i, p in enumerate(self.peers.values()):  # spread the first pings over a period
            p.next_ping = now + self.config.interval * i / max(1, len(self.peers))
        ready.wake(now)
        return ready

    def on_tick(self, now: float) -> Ready:
        ready = Ready()
        for p in self.peers.values():
            timeout = self._timeout(p.name)
            for seq, sent in list(p.outstanding.items()):
                if now >= sent + timeout:  # the very sum the wake-up was set for
                    del p.outstanding[seq]
                    self._lost(p, now)
            if now >= p.next_ping:
                seq = p.next_seq
                p.next_seq += 1
                p.outstanding[seq] = now
                p.sent += 1
                p.next_ping = max(p.next_ping + self.config.interval, now)
                ready.send(p.name, Ping(seq, now, self.name, self.region, self.coords.mine,
                                        self._lsas()))  # fmt: skip
            ready.wake(p.next_ping)
            if p.outstanding:
                ready.wake(min(p.outstanding.values()) + timeout)
        self._expire_lsas(now)
        return ready

    def on_message(self, now: float, src: str, msg: Any) -> Ready:
        ready = Ready()
        if isinstance(msg, Ping):
            self._learn(now, msg.src, msg.region, msg.coord, msg.lsas)
            ready.send(msg.src, Pong(msg.seq, msg.sent, self.name, self.region,
                                     self.coords.mine, self._lsas()))  # fmt: skip
        elif isinstance(msg, Pong):
            self._learn(now, msg.src, msg.region, msg.coord, msg.lsas)
            p = self.peers.get(msg.src)
            if p is None or p.outstanding.pop(msg.seq, None) is None:
                return ready  # late (already counted lost) or not ours
            rtt_ms = max(0.0, (now - msg.sent) * 1000.0)
            p.answered += 1
            p.recent.append(rtt_ms)
            p.lost_in_row = 0
            if self.topology.link(self.name, p.name) is None:
                self.own_seq += 1  # a new link: advertise it
            elif not self._link_up(p.name):
                self._changed(now, p.name, True)  # back up: through the router's table
            self.topology.observe_rtt(self.name, p.name, rtt_ms, now)
            if msg.coord is not None:
                try:
                    self.coords.observe(p.name, msg.coord, rtt_ms)
                except ValueError:
                    pass  # an incompatible coordinate: keep the RTT, skip Vivaldi
        return ready

    # ------------------------------------------------------------------ link state

    def _timeout(self, peer: str) -> float:
        link = self.topology.link(self.name, peer)
        if link is None or link.samples == 0:
            return self.config.max_timeout
        # RFC 6298's RTO shape (srtt + 4 rttvar), floored and capped for a fast probe
        rto = (link.rtt_ms + 4 * 2 * link.jitter_ms) / 1000.0
        return min(self.config.max_timeout, max(self.config.min_timeout, 1.5 * rto))

    def _link_up(self, peer: str) -> bool:
        link = self.topology.link(self.name, peer)
        return link is not None and link.up

    def _lost(self, p: PeerState, now: float) -> None:
        p.lost += 1
        p.lost_in_row += 1
        self.topology.observe_loss(self.name, p.name, True, now)
        if p.lost_in_row >= self.config.down_after and self._link_up(p.name):
            self._changed(now, p.name, False)

    def _changed(self, now: float, peer: str, up: bool) -> None:
        a, b = link_key(self.name, peer)
        self.own_seq += 1
        self._set_link(now, a, b, up, reporter=self.name)

    def _set_link(self, now: float, a: str, b: str, up: bool, reporter: str) -> None:
        changes = self.router.link_state(a, b, up, now)
        self.events.append(
            Event(now, "link-up" if up else "link-down", {"link": [a, b], "by": reporter})
        )
        self._record(now, changes)

    def _record(self, now: float, changes: list[RouteChange]) -> None:
        for c in changes:
            self.reroutes += 1
            self.events.append(
                Event(now, "reroute", {
                    "dst": c.dst, "qos": c.qos.value,
                    "old": list(c.old) if c.old else None,
                    "new": list(c.new) if c.new else None,
                })
            )  # fmt: skip

    def own_lsa(self) -> LSA:
        reports = []
        for peer in self.peers:
            link = self.topology.link(self.name, peer)
            if link is None:
                continue
            reports.append(LinkReport(peer, link.rtt_ms, link.loss, link.up, link.bandwidth_mbps))
        return LSA(self.name, self.region, self.own_seq, tuple(reports), self.coords.mine)

    def _lsas(self) -> tuple[LSA, ...]:
        others = sorted(self.lsdb)
        relayed: list[LSA] = []
        if others:
            for i in range(min(MAX_RELAYED, len(others))):
                relayed.append(self.lsdb[others[(self._relay_cursor + i) % len(others)]][0])
            self._relay_cursor = (self._relay_cursor + MAX_RELAYED) % len(others)
        return (self.own_lsa(), *relayed)

    def _learn(
        self, now: float, src: str, region: str, coord: Coordinate | None, lsas: Iterable[LSA]
    ) -> None:
        if src not in self.topology.members:
            self.topology.add_member(Member(src, region))
        if coord is not None:
            self.coords.learn(src, coord)
        for lsa in lsas:
            if lsa.origin == self.name:
                continue
            have = self.lsdb.get(lsa.origin)
            # newer sequence, or the same one refreshed (its measurements move between
            # sequence bumps, which happen only on up/down changes)
            if have is not None and lsa.seq < have[0].seq:
                continue
            self.lsdb[lsa.origin] = (lsa, now)
            if lsa.origin not in self.topology.members:
                self.topology.add_member(Member(lsa.origin, lsa.region))
            if lsa.coord is not None:
                self.coords.learn(lsa.origin, lsa.coord)
            self._apply_lsa(now, lsa)

    def _apply_lsa(self, now: float, lsa: LSA) -> None:
        for r in lsa.links:
            if self.name in (lsa.origin, r.peer):
                continue  # our own links: our measurements decide
            if r.peer not in self.topology.members:
                self.topology.add_member(Member(r.peer, r.peer))
            a, b = link_key(lsa.origin, r.peer)
            other = self._report(r.peer, lsa.origin)
            up = r.up and (other is None or other.up)
            rtt = r.rtt_ms if other is None else (r.rtt_ms + other.rtt_ms) / 2
            link = self.topology.link(a, b)
            if link is None:
                self.topology.add_link(a, b, rtt / 2, bandwidth_mbps=max(r.bandwidth_mbps, 1e-3),
                                       loss=min(max(r.loss, 0.0), 1.0), up=up, now=now)  # fmt: skip
                continue
            link.latency_ms, link.loss = rtt / 2, min(max(r.loss, 0.0), 1.0)
            link.bandwidth_mbps = max(r.bandwidth_mbps, 1e-3)
            if link.up != up:
                self._set_link(now, a, b, up, reporter=lsa.origin)

    def _report(self, origin: str, peer: str) -> LinkReport | None:
        have = self.lsdb.get(origin)
        if have is None:
            return None
        return next((r for r in have[0].links if r.peer == peer), None)

    def _expire_lsas(self, now: float) -> None:
        for origin, (lsa, heard) in list(self.lsdb.items()):
            if now - heard > self.config.lsa_max_age:
                del self.lsdb[origin]
                for r in lsa.links:  # what only it reported on is no longer known
                    a, b = link_key(origin, r.peer)
                    if self.name not in (a, b) and self._report(r.peer, origin) is None:
                        link = self.topology.link(a, b)
                        if link is not None and link.up:
                            self._set_link(now, a, b, False, reporter=f"{origin} (silent)")

    # ------------------------------------------------------------------ views

    def rtt_matrix(self) -> dict[str, dict[str, float]]:
        out: dict[str, dict[str, float]] = {}
        for link in self.topology.links():
            if link.samples or link.a != self.name:
                out.setdefault(link.a, {})[link.b] = link.rtt_ms
                out.setdefault(link.b, {})[link.a] = link.rtt_ms
        return out

    def peer_stats(self) -> dict[str, dict[str, Any]]:
        out = {}
        for p in self.peers.values():
            link = self.topology.link(self.name, p.name)
            out[p.name] = {
                "region": p.region,
                "sent": p.sent,
                "answered": p.answered,
                "lost": p.lost,
                "up": bool(link and link.up),
                "rtt_ms": link.rtt_ms if link and link.samples else None,
                "jitter_ms": link.jitter_ms if link and link.samples else None,
                # the last 16 samples' median and minimum: what the link is now, free of the
                # smoothed value's memory of a slow start. Delays on the way (queues, a busy
                # host) only ever add, so the minimum is the path's own RTT (BBR's min_rtt
                # filter); the demo's matrix shows it
                "rtt_p50_ms": sorted(p.recent)[len(p.recent) // 2] if p.recent else None,
                "rtt_min_ms": min(p.recent) if p.recent else None,
                "loss": link.loss if link else None,
            }
        return out
