"""Session affinity by hashing: a consistent-hash ring and Maglev.

Both map a key (a session id, a client id, a VM id) to a backend so that the same key
keeps reaching the same backend, and only few keys move when the set of backends changes:

- :class:`HashRing` (Karger et al.; ketama-style): every backend owns ``vnodes`` points on
  a 64-bit circle, a key belongs to the first point at or after its hash. When one of N
  backends leaves only its keys move (about 1/N of them); balance improves with vnodes
  (150 by default: a backend's share is within about 1/sqrt(150), ~8%, of 1/N).
- :class:`Maglev` (Eisenbud et al., NSDI 2016, section 3.4): a lookup table of prime size
  M filled by the backends taking turns along their own permutation of the slots. Shares
  differ by at most one slot (near-perfect balance), a lookup is one modulo and one index,
  and a removal moves the removed backend's keys plus a small extra share, which shrinks
  as M grows relative to N (the paper recommends M > 100 N).

Hashes are xxh3-64 of the key's bytes: stable across processes and machines, so every
gateway replica maps a key the same way (Python's own ``hash`` is salted per process).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping

import xxhash

_h64 = xxhash.xxh3_64_intdigest
_bisect = bisect.bisect_left
_OFFSET_SEED = 0x4D61676C  # "Magl"
_SKIP_SEED = 0x65764D61  # "evMa"
MAGLEV_DEFAULT_SIZE = 65537  # the paper's evaluation size (prime)


def key_hash(key: str | bytes) -> int:
    return _h64(key.encode() if isinstance(key, str) else key)


def _weights(nodes: Iterable[str] | Mapping[str, int]) -> dict[str, int]:
    weights = dict(nodes) if isinstance(nodes, Mapping) else dict.fromkeys(nodes, 1)
    for name, w in weights.items():
        if not isinstance(w, int) or w < 1:
            raise ValueError(f"weight of {name!r}: a positive integer, not {w!r}")
    return weights


class HashRing:
    """Consistent hashing with ``vnodes`` points per unit of weight."""

    def __init__(self, nodes: Iterable[str] | Mapping[str, int], vnodes: int = 150) -> None:
        if vnodes < 1:
            raise ValueError("vnodes: at least 1")
        weights = _weights(nodes)
        points = sorted(
            (_h64(f"{name}#{i}".encode()), name)
            for name, w in weights.items()
            for i in range(vnodes * w)
        )
        self.nodes = tuple(sorted(weights))
        self.vnodes = vnodes
        self._hashes = [h for h, _ in points]
        self._owners = [n for _, n in points]

    def __len__(self) -> int:
        return len(self.nodes)

    def lookup(self, key: str | bytes) -> str:
        # one function, no helper calls: this is the per-request path
        i = _bisect(self._hashes, _h64(key.encode() if type(key) is str else key))  # type: ignore[arg-type]
        owners = self._owners
        if i < len(owners):
            return owners[i]
        if not owners:
            raise LookupError("the ring is empty")
        return owners[0]

    def lookup_hash(self, h: int) -> str:
        if not self._owners:
            raise LookupError("the ring is empty")
        i = _bisect(self._hashes, h)
        return self._owners[i if i < len(self._owners) else 0]


def is_prime(n: int) -> bool:
    if n < 2:
        return False
    if n % 2 == 0:
        return n == 2
    f = 3
    while f * f <= n:
        if n % f == 0:
            return False
        f += 2
    return True


def prime_at_least(n: int) -> int:
    while not is_prime(n):
        n += 1
    return n


class Maglev:
    """Maglev hashing: a table of prime ``size`` slots, each naming a backend.

    Population (the paper's Pseudocode 1): backend i prefers slots
    ``(offset_i + j * skip_i) mod M`` for j = 0, 1, ...; the backends take turns, each
    claiming its next preferred free slot, until the table is full. A backend of weight w
    takes w turns per round (the paper's way of weighting: relative frequency of turns).
    """

    def __init__(
        self, nodes: Iterable[str] | Mapping[str, int], size: int = MAGLEV_DEFAULT_SIZE
    ) -> None:
        weights = _weights(nodes)
        if not is_prime(size):
            raise ValueError(f"size: a prime (the permutations need it), not {size}")
        if weights and size < len(weights):
            raise ValueError(f"size {size} is smaller than the {len(weights)} backends")
        self.nodes = tuple(sorted(weights))
        self.size = size
        self._table: list[str] = self._populate(weights, size) if weights else []

    def __len__(self) -> int:
        return len(self.nodes)

    @staticmethod
    def _populate(weights: Mapping[str, int], m: int) -> list[str]:
        names = sorted(weights)
        offsets = [_h64(n.encode(), seed=_OFFSET_SEED) % m for n in names]
        skips = [_h64(n.encode(), seed=_SKIP_SEED) % (m - 1) + 1 for n in names]
        turns = [weights[n] for n in names]
        # next[i] is kept as the slot itself (advanced by skip) rather than an index j:
        # one addition and one comparison per probe instead of a multiply and a modulo.
        slot = list(offsets)
        table = [-1] * m
        filled = 0
        while True:
            for i in range(len(names)):
                skip = skips[i]
                c = slot[i]
                for _ in range(turns[i]):
                    while table[c] >= 0:
                        c += skip
                        if c >= m:
                            c -= m
                    table[c] = i
                    filled += 1
                    if filled == m:
                        return [names[k] for k in table]
                    c += skip
                    if c >= m:
                        c -= m
                slot[i] = c

    def lookup(self, key: str | bytes) -> str:
        if not self._table:
            raise LookupError("the table is empty")
        return self._table[_h64(key.encode() if type(key) is str else key) % self.size]  # type: ignore[arg-type]

    def lookup_hash(self, h: int) -> str:
        if not self._table:
            raise LookupError("the table is empty")
        return self._table[h % self.size]

    def shares(self) -> dict[str, int]:
        """Slots per backend (for balance figures)."""
        out = dict.fromkeys(self.nodes, 0)
        for name in self._table:
            out[name] += 1
        return out
