"""Registers: LWW (one winner by HLC timestamp) and MV (keeps every concurrent value)."""

from __future__ import annotations

from typing import Any

import msgpack

from novacron_core.clocks import CausalContext, Dot, HLCTimestamp, VersionVector
from novacron_core.sync.crdt.base import Atom, Crdt, atom, context_from_wire, dot_from_wire
from novacron_core.sync.crdt.dots import compact_stable, context_of, join_dotfun
from novacron_core.sync.crdt.orset import fresh_dot


def _value_key(v: Atom) -> bytes:
    out: bytes = msgpack.packb(v, use_bin_type=True)
    return out


class LWWRegister(Crdt):
    """Last writer wins by HLC timestamp; the timestamp's replica id breaks wall-clock ties,
    and on a fully equal timestamp (a replica re-using one, which the HLC never does) the larger
    encoded value wins, so every replica picks the same winner."""

    KIND = 6
    __slots__ = ("ts", "val")

    def __init__(self, replica: str = "", val: Atom = None, ts: HLCTimestamp | None = None) -> None:
        self.replica = replica
        self.val: Atom = val
        self.ts = ts

    def assign(self, val: Atom, ts: HLCTimestamp) -> LWWRegister:
        delta = LWWRegister(val=val, ts=ts)
        self.merge(delta)
        return delta

    def value(self) -> Atom:
        return self.val

    def merge(self, other: Any) -> None:
        theirs = other.ts
        if theirs is None:
            return
        mine = self.ts
        if (
            mine is None
            or theirs > mine
            or (theirs == mine and _value_key(other.val) > _value_key(self.val))
        ):
            self.val, self.ts = other.val, theirs

    def to_wire(self) -> list[Any]:
        return [] if self.ts is None else [self.val, *self.ts.to_wire()]

    @classmethod
    def from_wire(cls, raw: Any) -> LWWRegister:
        if raw == []:
            return cls()
        if not isinstance(raw, list) or len(raw) != 4:
            raise TypeError("an LWW-Register is [] or [value, wall, logical, replica]")
        return cls(val=atom(raw[0]), ts=HLCTimestamp.from_wire(raw[1:]))


class MVRegister(Crdt):
    """Multi-value register: an assignment replaces what it observed; concurrent assignments
    all survive (as siblings) until one that has seen them all replaces them."""

    KIND = 7
    __slots__ = ("ctx", "entries")

    def __init__(
        self,
        replica: str = "",
        entries: dict[Dot, Atom] | None = None,
        ctx: CausalContext | None = None,
    ) -> None:
        self.replica = replica
        self.entries: dict[Dot, Atom] = entries if entries is not None else {}
        self.ctx = ctx if ctx is not None else CausalContext()

    def assign(self, val: Atom) -> MVRegister:
        old = list(self.entries)
        dot = fresh_dot(self.ctx, self.replica)
        self.entries = {dot: val}
        return MVRegister(entries={dot: val}, ctx=context_of([*old, dot]))

    def value(self) -> list[Atom]:
        """Every concurrent value, in a canonical order (by dot)."""
        return [self.entries[d] for d in sorted(self.entries)]

    def merge(self, other: Any) -> None:
        join_dotfun(self.entries, self.ctx, other.entries, other.ctx)
        self.ctx.merge(other.ctx)

    def gc(self, stable: VersionVector) -> None:
        # siblings are the value, never metadata: only the context's stable prefix folds
        compact_stable(self.ctx, stable)

    def to_wire(self) -> list[Any]:
        return [
            [[d.replica, d.counter, self.entries[d]] for d in sorted(self.entries)],
            self.ctx.to_wire(),
        ]

    @classmethod
    def from_wire(cls, raw: Any) -> MVRegister:
        if not isinstance(raw, list) or len(raw) != 2 or not isinstance(raw[0], list):
            raise TypeError("an MV-Register is [entries, context]")
        entries: dict[Dot, Atom] = {}
        for e in raw[0]:
            if not isinstance(e, list) or len(e) != 3:
                raise TypeError("an MV entry is [replica, counter, value]")
            entries[dot_from_wire(e[:2])] = atom(e[2])
        return cls(entries=entries, ctx=context_from_wire(raw[1]))
