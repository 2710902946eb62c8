"""One table of every CRDT type's mutators: how to build a replica and apply an op to it.

Shared by the property tests (``tests/sync/kinds.py`` draws the ops with hypothesis) and the
per-type throughput figures (``bench.type_throughput`` applies ``bench_op(i)`` for i = 0..n),
so both exercise the same mutators. An op is plain data (ints, atoms, tuples), its shape
fixed per kind (see each ``apply``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from novacron_core.clocks import HLCTimestamp
from novacron_core.sync.crdt import (
    RGA,
    Crdt,
    GCounter,
    GSet,
    LWWRegister,
    MVRegister,
    ORMap,
    ORSet,
    PNCounter,
    TwoPSet,
)


@dataclass(frozen=True)
class Kind:
    name: str
    make: Callable[[str], Crdt]  # replica id -> an empty replica
    apply: Callable[[Any, Any], Crdt]  # (replica's value, op) -> delta
    bench_op: Callable[[int], Any] | None  # the i-th op of the throughput figures (None: skip)

    def __repr__(self) -> str:
        return self.name


def _add_or_remove(s: Any, op: tuple[bool, Any]) -> Crdt:
    """``(True, x)`` adds x, ``(False, x)`` removes it (2P-Set, OR-Set)."""
    return s.add(op[1]) if op[0] else s.remove(op[1])  # type: ignore[no-any-return]


def _lww(r: LWWRegister, op: tuple[Any, int, int]) -> Crdt:
    """``(value, wall_ms, logical)``: assign with that timestamp (replica id breaks ties)."""
    return r.assign(op[0], HLCTimestamp(op[1], op[2], r.replica))


def _ormap(m: ORMap, op: tuple[str, str, int]) -> Crdt:
    """``(key, what, n)``: ``rm`` removes the key; keys ``c*`` hold PN-Counters (add n),
    others OR-Sets (``add`` / ``del`` element n)."""
    key, what, n = op
    if what == "rm":
        return m.remove(key)
    if key.startswith("c"):
        return m.update(key, PNCounter, lambda c: c.increment(n))
    if what == "add":
        return m.update(key, ORSet, lambda s: s.add(n))
    return m.update(key, ORSet, lambda s: s.remove(n))


def _rga(r: RGA, op: tuple[str, float, str]) -> Crdt:
    """``(ins|del, where in [0, 1], text)``: insert text there, or delete len(text) elements
    from there (an insert when the document is empty)."""
    kind, frac, text = op
    if kind == "del" and len(r):
        pos = min(int(frac * len(r)), len(r) - 1)
        return r.delete(pos, min(len(text), len(r) - pos) or 1)
    return r.insert(min(int(frac * (len(r) + 1)), len(r)), text)


def _set_churn(i: int, size: int) -> tuple[bool, int]:
    return (True, i % size) if i % 4 else (False, (i - 1) % size)


KINDS: list[Kind] = [
    Kind("GCounter", GCounter, lambda c, n: c.increment(n), lambda i: 1),
    Kind("PNCounter", PNCounter, lambda c, n: c.increment(n), lambda i: 1 if i % 3 else -1),
    Kind("GSet", GSet, lambda s, x: s.add(x), lambda i: i % 1000),
    Kind("TwoPSet", TwoPSet, _add_or_remove, lambda i: (True, i) if i % 4 else (False, i - 1)),
    Kind("ORSet", ORSet, _add_or_remove, lambda i: _set_churn(i, 64)),
    # the same, with the indexed fast merge path taken from the first element on
    Kind("ORSet-indexed", lambda r: ORSet(r, fast_min=0), _add_or_remove, None),
    Kind("LWWRegister", LWWRegister, _lww, lambda i: (i, i, 0)),
    Kind("MVRegister", MVRegister, lambda r, x: r.assign(x), lambda i: i),
    Kind("ORMap", ORMap, _ormap, lambda i: (f"c{i % 64}", "add", 1)),
    Kind("ORMap-indexed", lambda r: ORMap(r, fast_min=0), _ormap, None),
    # middle inserts, some deletes
    Kind("RGA", RGA, _rga, lambda i: ("ins", 0.5, "x") if i % 4 else ("del", 1 / 3, "x")),
]
BY_NAME = {k.name: k for k in KINDS}
