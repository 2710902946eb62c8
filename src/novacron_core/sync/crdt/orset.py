"""OR-Set: observed-remove, add-wins, built on a dot store (no tombstones).

Each add tags the element with a fresh dot; a remove deletes the dots it has observed. A
concurrent add carries a dot the remover never saw, so it survives: add wins. Removed dots
live on only inside the compressed causal context (a version vector plus stragglers).
Elements are held by their typed identity (``1``, ``True`` and ``1.0`` are three elements, see
:func:`~novacron_core.sync.crdt.base.key_of`); ``elements()`` lists them all.
"""

from __future__ import annotations

from typing import Any

from novacron_core.clocks import CausalContext, Dot, VersionVector
from novacron_core.sync.crdt.base import (
    Atom,
    Crdt,
    Key,
    atom,
    atom_of,
    context_from_wire,
    dot_from_wire,
    key_of,
    sorted_keys,
)
from novacron_core.sync.crdt.dots import compact_stable, context_of, join_dotfun
from novacron_core.sync.crdt.sets import frozen


def next_counter(ctx: CausalContext, replica: str) -> int:
    """The counter :func:`fresh_dot` would give ``replica`` next."""
    if not replica:
        raise ValueError("a mutating replica needs an id")
    top = ctx.vv.get(replica)
    for d in ctx.cloud:
        if d.replica == replica and d.counter > top:
            top = d.counter
    return top + 1


def fresh_dot(ctx: CausalContext, replica: str) -> Dot:
    """The next dot of ``replica``, beyond anything of its own the context has seen."""
    dot = Dot(replica, next_counter(ctx, replica))
    ctx.add(dot)
    return dot


def dots_wire(dots: dict[Dot, Any]) -> list[list[Any]]:
    return sorted([d.replica, d.counter] for d in dots)


def small_dots(ctx: CausalContext, limit: int = 32) -> list[Dot] | None:
    """Every dot of a context, if it has at most ``limit`` (deltas usually do)."""
    if len(ctx.cloud) + sum(ctx.vv.counters.values()) > limit:
        return None
    dots = list(ctx.cloud)
    for r, c in ctx.vv.counters.items():
        dots += (Dot(r, n) for n in range(1, c + 1))
    return dots


class ORSet(Crdt):
    """``fast_min``: from this many elements on, merging a small delta goes through a
    dot -> element index and touches only the elements the delta names or removes, instead
    of checking every element against the delta's context."""

    KIND = 5
    FAST_MIN = 16
    __slots__ = ("_owner", "ctx", "entries", "fast_min")

    def __init__(
        self,
        replica: str = "",
        entries: dict[Key, dict[Dot, None]] | None = None,
        ctx: CausalContext | None = None,
        fast_min: int | None = None,
    ) -> None:
        self.replica = replica
        # element key (``key_of``) -> its live dots
        self.entries: dict[Key, dict[Dot, None]] = entries if entries is not None else {}
        self.ctx = ctx if ctx is not None else CausalContext()
        self.fast_min = self.FAST_MIN if fast_min is None else fast_min
        self._owner: dict[Dot, Key] | None = None  # built on the first fast merge

    def add(self, x: Atom) -> ORSet:
        k = key_of(x)
        old = list(self.entries.get(k, ()))
        dot = fresh_dot(self.ctx, self.replica)
        self.entries[k] = {dot: None}
        if self._owner is not None:
            for d in old:
                self._owner.pop(d, None)
            self._owner[dot] = k
        return ORSet(entries={k: {dot: None}}, ctx=context_of([*old, dot]))

    def remove(self, x: Atom) -> ORSet:
        old = self.entries.pop(key_of(x), {})
        if self._owner is not None:
            for d in old:
                self._owner.pop(d, None)
        return ORSet(ctx=context_of(list(old)))

    def __contains__(self, x: Atom) -> bool:
        return key_of(x) in self.entries

    def dots(self, x: Atom) -> dict[Dot, None]:
        """The live dots of element ``x`` (empty if absent)."""
        return self.entries.get(key_of(x), {})

    def value(self) -> frozenset[Atom]:
        return frozen(self.entries)

    def elements(self) -> list[Atom]:
        """Every element, typed, in canonical order."""
        return [atom_of(k) for k in sorted_keys(self.entries)]

    def merge(self, other: Any) -> None:
        if len(self.entries) >= self.fast_min and len(other.entries) <= 32:
            ctx_dots = small_dots(other.ctx)
            if ctx_dots is not None:
                self._merge_small(other, ctx_dots)
                return
        self._owner = None
        mine, theirs = self.entries, other.entries
        for x in list(mine):
            if x not in theirs:
                dots = mine[x]
                join_dotfun(dots, self.ctx, {}, other.ctx)
                if not dots:
                    del mine[x]
        for x, their_dots in theirs.items():
            dots = mine.get(x) or {}
            join_dotfun(dots, self.ctx, their_dots, other.ctx)
            if dots:
                mine[x] = dots
            else:
                mine.pop(x, None)
        self.ctx.merge(other.ctx)

    def _merge_small(self, other: ORSet, their_ctx_dots: list[Dot]) -> None:
        # Only elements the delta carries, or whose dots its context covers, can change.
        owner = self._owner
        if owner is None:
            owner = self._owner = {d: x for x, ds in self.entries.items() for d in ds}
        touched = set(other.entries)
        touched.update(owner[d] for d in their_ctx_dots if d in owner)
        for x in touched:
            dots = self.entries.get(x) or {}
            old = list(dots)
            join_dotfun(dots, self.ctx, other.entries.get(x, {}), other.ctx)
            for d in old:
                if d not in dots:
                    del owner[d]
            for d in dots:
                owner[d] = x
            if dots:
                self.entries[x] = dots
            else:
                self.entries.pop(x, None)
        self.ctx.merge(other.ctx)

    def gc(self, stable: VersionVector) -> None:
        """``stable``: dots of *this* value every replica has seen (see the engine). Folds them
        into the context's version vector (closing gaps out-of-order deltas left).

        Several concurrent adds of one element keep their dots: collapsing them into one (as
        this once did) makes the deltas of later ops on the element name only the kept dot,
        and a replica still holding the others never learns the op observed them (a remove
        after GC left the element there for good). They fold into one dot at the next add or
        remove of the element on any replica, so an element holds at most one dot per
        replica that added it concurrently."""
        compact_stable(self.ctx, stable)

    def to_wire(self) -> list[Any]:
        return [
            [[atom_of(k), dots_wire(self.entries[k])] for k in sorted_keys(self.entries)],
            self.ctx.to_wire(),
        ]

    @classmethod
    def from_wire(cls, raw: Any) -> ORSet:
        if not isinstance(raw, list) or len(raw) != 2 or not isinstance(raw[0], list):
            raise TypeError("an OR-Set is [entries, context]")
        entries: dict[Key, dict[Dot, None]] = {}
        for item in raw[0]:
            if not isinstance(item, list) or len(item) != 2 or not isinstance(item[1], list):
                raise TypeError("an OR-Set entry is [element, dots]")
            dots = {dot_from_wire(d): None for d in item[1]}
            if dots:
                entries[key_of(atom(item[0]))] = dots
        return cls(entries=entries, ctx=context_from_wire(raw[1]))
