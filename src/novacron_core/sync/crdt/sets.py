"""Grow-only and two-phase sets of atoms.

The 2P-Set keeps a removed set forever by design: an element removed once can never come
back, and that promise needs the tombstone. Use the OR-Set when elements come and go.

Elements are held by their typed identity (:func:`~novacron_core.sync.crdt.base.key_of`):
``1``, ``True`` and ``1.0`` are three elements, as they are on the wire. ``value()`` is a
frozenset, in which Python identifies them, so ``elements()`` lists every one of them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from novacron_core.sync.crdt.base import Atom, Crdt, Key, atom, atom_of, key_of, sorted_keys


def _keys(raw: Any) -> set[Key]:
    if not isinstance(raw, list):
        raise TypeError("a set is an array")
    return {key_of(atom(x)) for x in raw}


def frozen(keys: Iterable[Key]) -> frozenset[Atom]:
    """The user-facing frozenset, built in canonical order so that of several elements Python
    identifies (``1``, ``True``, ``1.0``) every replica shows the same one."""
    return frozenset(atom_of(k) for k in sorted_keys(keys))


class GSet(Crdt):
    KIND = 3
    __slots__ = ("members",)

    def __init__(self, replica: str = "", items: Iterable[Atom] | None = None) -> None:
        self.replica = replica
        self.members: set[Key] = {key_of(x) for x in items or ()}

    def add(self, x: Atom) -> GSet:
        k = key_of(x)
        self.members.add(k)
        out = GSet()
        out.members.add(k)
        return out

    def __contains__(self, x: Atom) -> bool:
        return key_of(x) in self.members

    def value(self) -> frozenset[Atom]:
        return frozen(self.members)

    def elements(self) -> list[Atom]:
        """Every element, typed, in canonical order."""
        return [atom_of(k) for k in sorted_keys(self.members)]

    def merge(self, other: Any) -> None:
        self.members |= other.members

    def to_wire(self) -> list[Any]:
        return self.elements()

    @classmethod
    def from_wire(cls, raw: Any) -> GSet:
        out = cls()
        out.members = _keys(raw)
        return out


class TwoPSet(Crdt):
    KIND = 4
    __slots__ = ("added", "removed")

    def __init__(
        self,
        replica: str = "",
        added: Iterable[Atom] | None = None,
        removed: Iterable[Atom] | None = None,
    ) -> None:
        self.replica = replica
        self.added: set[Key] = {key_of(x) for x in added or ()}
        self.removed: set[Key] = {key_of(x) for x in removed or ()}

    def add(self, x: Atom) -> TwoPSet:
        self.added.add(key_of(x))
        return TwoPSet(added=[x])

    def remove(self, x: Atom) -> TwoPSet:
        """Removing an element never added is allowed: it can then never be added."""
        self.removed.add(key_of(x))
        return TwoPSet(removed=[x])

    def value(self) -> frozenset[Atom]:
        return frozen(self.added - self.removed)

    def elements(self) -> list[Atom]:
        """Every present element, typed, in canonical order."""
        return [atom_of(k) for k in sorted_keys(self.added - self.removed)]

    def merge(self, other: Any) -> None:
        self.added |= other.added
        self.removed |= other.removed

    def to_wire(self) -> list[Any]:
        return [
            [atom_of(k) for k in sorted_keys(self.added)],
            [atom_of(k) for k in sorted_keys(self.removed)],
        ]

    @classmethod
    def from_wire(cls, raw: Any) -> TwoPSet:
        if not isinstance(raw, list) or len(raw) != 2:
            raise TypeError("a 2P-Set is [added, removed]")
        out = cls()
        out.added, out.removed = _keys(raw[0]), _keys(raw[1])
        return out
