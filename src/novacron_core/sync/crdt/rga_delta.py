"""What RGA mutators return: runs of inserted elements and stamped deletes (see ``rga.py``)."""

from __future__ import annotations

from itertools import pairwise
from typing import Any

from novacron_core.sync.crdt import rga_wire
from novacron_core.sync.crdt.base import Atom, Crdt
from novacron_core.sync.crdt.rga_chunks import MASK, SHIFT, STEP
from novacron_core.sync.crdt.rga_wire import Id, Origin, Run

Stamp = Id | None
Insert = tuple[Id, Origin, Atom]
_new = object.__new__


def earlier(a: Stamp, b: Stamp) -> bool:
    """Which of two stamps of one element's deletes a replica keeps: any would do for GC;
    the smallest known one, so that replicas agree (and encode alike)."""
    if b is None:
        return a is not None
    return a is not None and a < b


class RgaDelta(Crdt):
    """Runs of inserted elements (a whole paste is one run) and deleted ids with their
    stamps; a join of such. Joining only appends: duplicates go when a replica integrates
    them, and when the delta is encoded (the encoding is canonical)."""

    KIND = 10
    __slots__ = ("_dels", "_lazy", "runs")

    def __init__(
        self,
        runs: list[Run] | None = None,
        dels: dict[Id, Stamp] | None = None,
        lazy: tuple[list[str], list[int], Stamp] | None = None,
    ) -> None:
        self.replica = ""
        self.runs: list[Run] = runs if runs is not None else []
        self._dels: dict[Id, Stamp] | None = dels  # (None: no deletes yet; made when needed)
        # a local delete's ids as its replica holds them (ints over its name table, which only
        # grows), turned into ids when first read: a block delete costs no tuple per element
        # unless the delta is shipped or merged
        self._lazy = lazy

    @property
    def dels(self) -> dict[Id, Stamp]:
        """Deleted id -> its delete's stamp."""
        if self._dels is None:
            self._dels = {}
        if self._lazy is not None:
            names, ids, stamp = self._lazy
            self._lazy = None
            self._dels.update(dict.fromkeys([(x >> SHIFT, names[x & MASK]) for x in ids], stamp))
        return self._dels

    @classmethod
    def one(cls, run: Run) -> RgaDelta:
        """A delta of one run and no deletes (what typing makes: one per keystroke, so it is
        built without ``__init__``'s work)."""
        out = _new(cls)
        out.replica = ""
        out.runs = [run]
        out._dels = out._lazy = None
        return out

    def merge(self, other: Any) -> None:
        if type(other) is not RgaDelta:  # (a whole state)
            other = other.as_delta()
        self.runs.extend(other.runs)
        mine = self.dels
        for i, s in other.dels.items():
            if i not in mine or earlier(s, mine[i]):
                mine[i] = s

    def del_runs(self) -> list[tuple[str, int, int, Stamp]]:
        """The deletes as (replica, lamport, count, stamp): stretches of consecutive ids of
        one replica and one stamp, in the order they were made (a block delete of pasted
        text is a few long ones)."""
        out: list[tuple[str, int, int, Stamp]] = []
        if self._lazy is not None and not self._dels:
            names, ids, stamp = self._lazy
            ends = [k for k, (a, b) in enumerate(pairwise(ids), 1) if b != a + STEP]
            start = 0
            for k in [*ends, len(ids)]:
                x = ids[start]
                out.append((names[x & MASK], x >> SHIFT, k - start, stamp))
                start = k
            return out
        for (lam, name), s in self.dels.items():
            if out:
                r, l0, m, s0 = out[-1]
                if r == name and l0 + m == lam and s0 == s:
                    out[-1] = (r, l0, m + 1, s)
                    continue
            out.append((name, lam, 1, s))
        return out

    def value(self) -> Any:
        from novacron_core.sync.crdt.rga import RGA

        return RGA.from_delta(self).value()

    def state_class(self) -> type[Crdt]:
        from novacron_core.sync.crdt.rga import RGA

        return RGA

    def top(self, replica: str) -> int:
        out = 0
        for r, lam, _, vals, stamp, _ in self.runs:
            if r == replica:
                out = max(out, lam + len(vals) - 1)
            if stamp is not None and stamp[1] == replica:
                out = max(out, stamp[0])
        for s in self.dels.values():
            if s is not None and s[1] == replica:
                out = max(out, s[0])
        return out

    def _elements(self) -> dict[Id, tuple[Origin, Atom | None, Origin]]:
        """id -> (origin, value or None if deleted and unknown, rank); also records in
        ``dels`` the deletes that value-less or stamped elements stand for."""
        out: dict[Id, tuple[Origin, Atom | None, Origin]] = {}
        for r, lam, origin, vals, stamp, rank in self.runs:
            o = origin
            for k, v in enumerate(vals):
                i = (lam + k, r)
                if i not in out or (out[i][1] is None and v is not None):
                    out[i] = (o, v, rank if k == 0 else None)
                if stamp is not None or v is None:
                    s = self.dels.get(i)
                    if i not in self.dels or earlier(stamp, s):
                        self.dels[i] = stamp
                o = i
        return out

    def elements(self) -> list[Insert]:
        """Every inserted element ``(id, origin, value)`` (None: deleted, value unknown)."""
        return [(i, o, v) for i, (o, v, _) in sorted(self._elements().items())]

    def deleted(self) -> list[Id]:
        """Every deleted id, in id order."""
        self._elements()
        return sorted(self.dels)

    def to_wire(self) -> list[Any]:
        elems = self._elements()
        dels = self.dels
        runs: list[Run] = []
        for i in sorted(elems, key=lambda i: (i[1], i[0])):
            o, v, rank = elems[i]
            v = None if i in dels else v
            if runs and rank is None:
                r, lam, _, vals, _, _ = runs[-1]
                if r == i[1] and lam + len(vals) == i[0] and o == (i[0] - 1, r):
                    vals.append(v)
                    continue
            runs.append((i[1], i[0], o, [v], None, rank))
        return rga_wire.encode(runs, sorted(dels.items()), [], None)

    @classmethod
    def from_wire(cls, raw: Any) -> RgaDelta:
        runs, deletes, _, _ = rga_wire.decode(raw)
        dels: dict[Id, Stamp] = {}
        for i, s in deletes:
            if i not in dels or earlier(s, dels[i]):
                dels[i] = s
        out = cls(runs, dels)
        out._elements()
        return out
