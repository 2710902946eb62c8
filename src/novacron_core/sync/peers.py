"""Region-aware gossip peer selection: mostly in-region, at least one cross-region per round.

Peers are drawn from shuffled rotations rather than independently at random: every peer is
contacted once per pass, which bounds the time until a given peer hears from us (the tail of
propagation latency) while staying random across passes.
"""

from __future__ import annotations

import random
from collections.abc import Mapping


class _Rotation:
    __slots__ = ("_items", "_pos", "_rng")

    def __init__(self, items: list[str], rng: random.Random) -> None:
        self._items = sorted(items)
        self._rng = rng
        self._rng.shuffle(self._items)
        self._pos = 0

    def __len__(self) -> int:
        return len(self._items)

    def take(self, n: int) -> list[str]:
        out: list[str] = []
        n = min(n, len(self._items))
        while len(out) < n:
            if self._pos == len(self._items):
                self._rng.shuffle(self._items)
                self._pos = 0
            x = self._items[self._pos]
            self._pos += 1
            if x not in out:
                out.append(x)
        return out


class PeerSelector:
    def __init__(
        self, region: str, peers: Mapping[str, str], rng: random.Random, cross_region: int = 1
    ) -> None:
        """``peers``: peer id -> region (excluding ourselves)."""
        self.local = _Rotation([p for p, r in peers.items() if r == region], rng)
        self.remote = _Rotation([p for p, r in peers.items() if r != region], rng)
        self.cross_region = cross_region
        self._round = 0
        self.local_peers = sorted(p for p, r in peers.items() if r == region)
        self._peers, self._region, self._rng = peers, region, rng
        self._regions: dict[str, _Rotation] | None = None  # made on first use

    def one_per_region(self) -> list[str]:
        """One peer of each other region, each region's in turn (eager push targets)."""
        if self._regions is None:
            by_region: dict[str, list[str]] = {}
            for p, r in self._peers.items():
                if r != self._region:
                    by_region.setdefault(r, []).append(p)
            self._regions = {r: _Rotation(ps, self._rng) for r, ps in sorted(by_region.items())}
        return [rot.take(1)[0] for rot in self._regions.values()]

    def pick(self, fanout: int) -> list[str]:
        """``fanout`` peers: ``cross_region`` of them remote, the rest local; with a fanout
        too small for both, a remote peer every third round and local peers otherwise."""
        self._round += 1
        if not len(self.local):
            n_remote = fanout
        elif fanout > self.cross_region:
            n_remote = self.cross_region
        else:
            n_remote = fanout if self._round % 3 == 1 else 0
        n_remote = min(n_remote, len(self.remote))
        local = self.local.take(fanout - n_remote)
        return self.remote.take(n_remote + max(0, fanout - n_remote - len(local))) + local
