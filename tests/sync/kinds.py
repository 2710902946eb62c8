"""Per-type recipes for the shared CRDT property tests: how to build one and mutate it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

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

elems = st.sampled_from(["a", "b", "c", "d", 1, 2, b"x"])


@dataclass(frozen=True)
class Kind:
    name: str
    make: Callable[[str], Crdt]
    op: st.SearchStrategy[Any]
    apply: Callable[[Any, Any], Crdt]  # (replica's crdt, op) -> delta

    def __repr__(self) -> str:
        return self.name


def _rga_apply(r: RGA, op: tuple[str, float, str]) -> Crdt:
    kind, frac, text = op
    if kind == "del" and len(r):
        pos = min(int(frac * len(r)), len(r) - 1)
        return r.delete(pos, min(len(text), len(r) - pos) or 1)
    return r.insert(min(int(frac * (len(r) + 1)), len(r)), text)


def _ormap_apply(m: ORMap, op: tuple[str, str, int]) -> Crdt:
    key, what, n = op
    if what == "rm":
        return m.remove(key)
    if key.startswith("c"):
        return m.update(key, PNCounter, lambda c: c.increment(n))  # type: ignore[attr-defined]
    if what == "add":
        return m.update(key, ORSet, lambda s: s.add(n))  # type: ignore[attr-defined]
    return m.update(key, ORSet, lambda s: s.remove(n))  # type: ignore[attr-defined]


_ORMAP_OPS = st.tuples(
    st.sampled_from(["c1", "c2", "s1"]),
    st.sampled_from(["add", "add", "del", "rm"]),
    st.integers(-3, 3),
)

KINDS = [
    Kind("GCounter", GCounter, st.integers(0, 5), lambda c, n: c.increment(n)),
    Kind("PNCounter", PNCounter, st.integers(-5, 5), lambda c, n: c.increment(n)),
    Kind("GSet", GSet, elems, lambda s, x: s.add(x)),
    Kind(
        "TwoPSet",
        TwoPSet,
        st.tuples(st.booleans(), elems),
        lambda s, op: s.add(op[1]) if op[0] else s.remove(op[1]),
    ),
    Kind(
        "ORSet",
        ORSet,
        st.tuples(st.booleans(), elems),
        lambda s, op: s.add(op[1]) if op[0] else s.remove(op[1]),
    ),
    Kind(  # the same, with the indexed fast merge path taken from the first element on
        "ORSet-indexed",
        lambda r: ORSet(r, fast_min=0),
        st.tuples(st.booleans(), elems),
        lambda s, op: s.add(op[1]) if op[0] else s.remove(op[1]),
    ),
    Kind(
        "LWWRegister",
        LWWRegister,
        st.tuples(elems, st.integers(0, 3), st.integers(0, 2)),
        lambda r, op: r.assign(op[0], HLCTimestamp(op[1], op[2], r.replica)),
    ),
    Kind("MVRegister", MVRegister, elems, lambda r, x: r.assign(x)),
    Kind("ORMap", ORMap, _ORMAP_OPS, _ormap_apply),
    Kind("ORMap-indexed", lambda r: ORMap(r, fast_min=0), _ORMAP_OPS, _ormap_apply),
    Kind(
        "RGA",
        RGA,
        st.tuples(
            st.sampled_from(["ins", "ins", "del"]),
            st.floats(0, 1),
            st.text(alphabet="xyz", min_size=1, max_size=3),
        ),
        _rga_apply,
    ),
]
