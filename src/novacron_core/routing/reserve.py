"""Bandwidth reservations with admission control, per QoS class (see ``qos.py`` for the
nested per-class limits). Sans-IO bookkeeping: the caller says which paths a flow may take;
this says yes (on which path) or no (and which link, which limit), and never half-reserves.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from novacron_core.routing.graph import Path
from novacron_core.routing.qos import QoS
from novacron_core.routing.topology import Topology, link_key

LinkKey = tuple[str, str]


@dataclass(frozen=True)
class Reservation:
    flow: str
    path: Path
    mbps: float
    qos: QoS

    @property
    def links(self) -> list[LinkKey]:
        return [link_key(a, b) for a, b in zip(self.path, self.path[1:], strict=False)]


@dataclass(frozen=True)
class Admission:
    """``ok``: reserved on ``path``. Otherwise nothing was reserved (certainly), and ``reason``
    names the link and the limit that refused."""

    ok: bool
    flow: str
    path: Path | None = None
    reason: str = ""
    link: LinkKey | None = None


class Reservations:
    def __init__(self, topology: Topology) -> None:
        self.topology = topology
        self.flows: dict[str, Reservation] = {}
        # link -> QoS -> Mbit/s reserved
        self._held: dict[LinkKey, dict[QoS, float]] = {}

    def reserved(self, a: str, b: str, qos: QoS | None = None) -> float:
        held = self._held.get(link_key(a, b), {})
        return held.get(qos, 0.0) if qos is not None else sum(held.values())

    def capacity(self, key: LinkKey) -> float | None:
        link = self.topology.link(*key)
        return link.bandwidth_mbps if link is not None and link.up else None

    def check(self, path: Path, mbps: float, qos: QoS) -> tuple[str, LinkKey | None]:
        """'' if ``mbps`` more of ``qos`` fits on every link of ``path``, else why not."""
        if mbps <= 0:
            return "mbps must be > 0", None
        if qos.spec.reservable <= 0:
            return f"class {qos.value} cannot reserve bandwidth (it takes what is left)", None
        if len(path) < 2:
            return "a reservation needs a path of at least one link", None
        for key in (link_key(a, b) for a, b in itertools.pairwise(path)):
            cap = self.capacity(key)
            if cap is None:
                return f"link {key[0]}-{key[1]} is down or unknown", key
            held = self._held.get(key, {})
            # every nested limit that covers this class: its own and each more important one
            for outer in QoS:
                if outer.spec.rank > qos.spec.rank:
                    continue
                inside = sum(v for q, v in held.items() if q.spec.rank >= outer.spec.rank)
                limit = outer.spec.reservable * cap
                if inside + mbps > limit + 1e-9:
                    return (
                        f"link {key[0]}-{key[1]}: {inside + mbps:g} Mbit/s would exceed the "
                        f"{outer.value} limit of {limit:g} ({outer.spec.reservable:.0%} of "
                        f"{cap:g})",
                        key,
                    )
        return "", None

    def admit(self, flow: str, candidates: Iterable[Path], mbps: float, qos: QoS) -> Admission:
        """Reserve ``mbps`` for ``flow`` on the first candidate path it fits on. Asking again
        for a flow that holds a reservation releases the old one first (it is replaced only if
        the new one is admitted)."""
        old = self.flows.pop(flow, None)
        if old is not None:
            self._apply(old, -1)
        first_reason, first_link = "no candidate path", None
        for path in candidates:
            why, key = self.check(tuple(path), mbps, qos)
            if not why:
                r = Reservation(flow, tuple(path), mbps, qos)
                self._apply(r, +1)
                self.flows[flow] = r
                return Admission(True, flow, r.path)
            if first_link is None and first_reason == "no candidate path":
                first_reason, first_link = why, key
        if old is not None:
            self._apply(old, +1)
            self.flows[flow] = old
        return Admission(False, flow, None, first_reason, first_link)

    def release(self, flow: str) -> bool:
        r = self.flows.pop(flow, None)
        if r is None:
            return False
        self._apply(r, -1)
        return True

    def on_link_down(
        self, a: str, b: str, candidates: Callable[[Reservation], Sequence[Path]]
    ) -> list[Admission]:
        """Move every reservation crossing a-b (now down) to the first of its candidates that
        admits it; one that fits nowhere is released (its Admission says why)."""
        key = link_key(a, b)
        hit = [r for r in self.flows.values() if key in r.links]
        out = []
        for r in sorted(hit, key=lambda r: (r.qos.spec.rank, r.flow)):  # important first
            self.release(r.flow)
            alive = [p for p in candidates(r) if key not in _links(p)]
            adm = self.admit(r.flow, alive, r.mbps, r.qos)
            out.append(adm)
        return out

    def _apply(self, r: Reservation, sign: int) -> None:
        for key in r.links:
            held = self._held.setdefault(key, {})
            held[r.qos] = held.get(r.qos, 0.0) + sign * r.mbps
            if held[r.qos] <= 1e-9:
                del held[r.qos]
            if not held:
                del self._held[key]

    def as_dict(self) -> dict[str, object]:
        return {
            "flows": [
                {"flow": r.flow, "path": list(r.path), "mbps": r.mbps, "qos": r.qos.value}
                for r in sorted(self.flows.values(), key=lambda r: r.flow)
            ],
            "links": [
                {"link": list(k), "reserved": {q.value: v for q, v in held.items()}}
                for k, held in sorted(self._held.items())
            ],
        }


def _links(path: Sequence[str]) -> list[LinkKey]:
    return [link_key(a, b) for a, b in itertools.pairwise(path)]
