"""Hypothesis strategies for the ops of each kind in the shared mutator table
(:mod:`novacron_core.sync.kinds`); the property tests build and mutate replicas through it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from novacron_core.sync.crdt import Crdt
from novacron_core.sync.kinds import KINDS as TABLE

# 1, True and 1.0 are three elements (equal in Python, not on the wire)
elems = st.sampled_from(["a", "b", "c", "d", 1, 2, b"x", True, 1.0, "1"])
_add_or_remove = st.tuples(st.booleans(), elems)
_ormap_ops = st.tuples(
    st.sampled_from(["c1", "c2", "s1"]),
    st.sampled_from(["add", "add", "del", "rm"]),
    st.integers(-3, 3),
)

OPS: dict[str, st.SearchStrategy[Any]] = {
    "GCounter": st.integers(0, 5),
    "PNCounter": st.integers(-5, 5),
    "GSet": elems,
    "TwoPSet": _add_or_remove,
    "ORSet": _add_or_remove,
    "ORSet-indexed": _add_or_remove,
    "LWWRegister": st.tuples(elems, st.integers(0, 3), st.integers(0, 2)),
    "MVRegister": elems,
    "ORMap": _ormap_ops,
    "ORMap-indexed": _ormap_ops,
    "RGA": st.tuples(
        st.sampled_from(["ins", "ins", "del"]),
        st.floats(0, 1),
        st.text(alphabet="xyz", min_size=1, max_size=3),
    ),
}


@dataclass(frozen=True)
class Kind:
    name: str
    make: Callable[[str], Crdt]
    op: st.SearchStrategy[Any]
    apply: Callable[[Any, Any], Crdt]  # (replica's crdt, op) -> delta

    def __repr__(self) -> str:
        return self.name


KINDS = [Kind(k.name, k.make, OPS[k.name], k.apply) for k in TABLE]
