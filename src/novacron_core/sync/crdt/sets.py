"""Grow-only and two-phase sets of atoms.

The 2P-Set keeps a removed set forever by design: an element removed once can never come
back, and that promise needs the tombstone. Use the OR-Set when elements come and go.
"""

from __future__ import annotations

from typing import Any

from novacron_core.sync.crdt.base import Atom, Crdt, atom, sorted_atoms


def _atoms(raw: Any) -> set[Atom]:
    if not isinstance(raw, list):
        raise TypeError("a set is an array")
    return {atom(x) for x in raw}


class GSet(Crdt):
    KIND = 3
    __slots__ = ("items",)

    def __init__(self, replica: str = "", items: set[Atom] | None = None) -> None:
        self.replica = replica
        self.items: set[Atom] = set(items or ())

    def add(self, x: Atom) -> GSet:
        self.items.add(x)
        return GSet(items={x})

    def value(self) -> frozenset[Atom]:
        return frozenset(self.items)

    def merge(self, other: Any) -> None:
        self.items |= other.items

    def to_wire(self) -> list[Any]:
        return sorted_atoms(self.items)

    @classmethod
    def from_wire(cls, raw: Any) -> GSet:
        return cls(items=_atoms(raw))


class TwoPSet(Crdt):
    KIND = 4
    __slots__ = ("added", "removed")

    def __init__(
        self, replica: str = "", added: set[Atom] | None = None, removed: set[Atom] | None = None
    ) -> None:
        self.replica = replica
        self.added: set[Atom] = set(added or ())
        self.removed: set[Atom] = set(removed or ())

    def add(self, x: Atom) -> TwoPSet:
        self.added.add(x)
        return TwoPSet(added={x})

    def remove(self, x: Atom) -> TwoPSet:
        """Removing an element never added is allowed: it can then never be added."""
        self.removed.add(x)
        return TwoPSet(removed={x})

    def value(self) -> frozenset[Atom]:
        return frozenset(self.added - self.removed)

    def merge(self, other: Any) -> None:
        self.added |= other.added
        self.removed |= other.removed

    def to_wire(self) -> list[Any]:
        return [sorted_atoms(self.added), sorted_atoms(self.removed)]

    @classmethod
    def from_wire(cls, raw: Any) -> TwoPSet:
        if not isinstance(raw, list) or len(raw) != 2:
            raise TypeError("a 2P-Set is [added, removed]")
        return cls(added=_atoms(raw[0]), removed=_atoms(raw[1]))
