"""OR-Map: keys with add-wins presence whose values are nested CRDTs.

Representation: ``key -> {dot: nested value}`` plus one causal context. An update joins the
key's current values, applies the mutation, and stores the result under a fresh dot that
supersedes every dot it observed, so sequential updates leave one entry per key. The delta of
an update therefore carries the key's whole nested value (small for counters, registers and
sets), not only the nested delta; that is what makes remove well defined:

* remove(key) deletes the dots it observed (no tombstone; the context remembers them).
* remove concurrent with update: the update's dot was not observed, so the key survives
  (update wins) with the value *as the updater saw it*; effects that only the remover had
  seen are gone with the dots that carried them. Every replica computes the same result,
  because a value lives exactly as long as the dot that carries it.
* concurrent updates: both dots survive and the read joins their values (e.g. both counter
  increments count); the next update on any replica folds them into one dot again.

In short, a key's value is the join of the nested histories its surviving versions carry,
and the join is only that if no two versions ever use one nested event id (a dot, a G-Counter
entry, an RGA element id) for different events. Nested ids restart in a fresh value, so a
replica mutates a nested value under an id of its own *per incarnation*: ``replica/n``, with
``n`` the map dot of the update that started it. It keeps that id while its latest version of
the key is still there (that version holds every event it made under the id, so fresh ones
continue beyond them), and takes a new one when the key was removed or re-created, or its
version was superseded by another replica's (which may lack its latest events): a key
re-created while a concurrent update of the old incarnation is in flight keeps both
incarnations' events, instead of letting the new one reuse (and so erase) the old one's.
What id belongs to which version is remembered per replica object, not on the wire: a
replica rebuilt from bytes just takes new ids (one more counter entry or context entry).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from novacron_core.clocks import CausalContext, Dot, VersionVector
from novacron_core.sync.crdt.base import (
    Atom,
    Crdt,
    Key,
    atom,
    atom_of,
    context_from_wire,
    dot_from_wire,
    from_tagged,
    key_of,
    sorted_keys,
    to_tagged,
)
from novacron_core.sync.crdt.dots import compact_stable, context_of, join_dotfun
from novacron_core.sync.crdt.orset import fresh_dot, next_counter, small_dots

C = TypeVar("C", bound=Crdt)


class ORMap(Crdt):
    """``fast_min``: as in :class:`ORSet`, from this many keys on small deltas are merged
    through a dot -> key index, touching only the keys they name or remove."""

    KIND = 8
    FAST_MIN = 16
    __slots__ = ("_nested", "_owner", "ctx", "entries", "fast_min")

    def __init__(
        self,
        replica: str = "",
        entries: dict[Key, dict[Dot, Crdt]] | None = None,
        ctx: CausalContext | None = None,
        fast_min: int | None = None,
    ) -> None:
        self.replica = replica
        # key (typed identity, ``key_of``) -> version dot -> nested value
        self.entries: dict[Key, dict[Dot, Crdt]] = entries if entries is not None else {}
        self.ctx = ctx if ctx is not None else CausalContext()
        self.fast_min = self.FAST_MIN if fast_min is None else fast_min
        self._owner: dict[Dot, Key] | None = None
        # key -> (our latest version's dot, the nested id it was written under, and the nested
        # value's own such table when it is an OR-Map): see the module docstring
        self._nested: dict[Key, tuple[Dot, str, Any]] = {}

    def get(self, key: Atom) -> Crdt | None:
        """The key's nested value (a fresh object: mutate it through :meth:`update`)."""
        return self._read(key_of(key))

    def _read(self, key: Key) -> Crdt | None:
        versions = self.entries.get(key)
        if not versions:
            return None
        # join in dot order: every replica reads the same value from the same versions
        dots = sorted(versions)
        out = versions[dots[0]].copy()
        for d in dots[1:]:
            out.merge(versions[d])
        return out

    def update(self, key: Atom, factory: type[C], mutate: Callable[[C], Any]) -> ORMap:
        """Apply ``mutate`` to the key's value (created by ``factory`` if absent)."""
        k = key_of(key)
        current = self._read(k)
        if current is None:
            current = factory()
        elif not isinstance(current, factory):
            raise TypeError(f"{key!r} holds a {type(current).__name__}, not {factory.__name__}")
        old = list(self.entries.get(k, ()))
        counter = next_counter(self.ctx, self.replica)
        mine = self._nested.get(k)
        if mine is not None and mine[0] in old:  # our latest version survives: keep its id
            nested_id, inner = mine[1], mine[2]
        else:
            nested_id, inner = f"{self.replica}/{counter}", None
        current.replica = nested_id
        nested_map = current if isinstance(current, ORMap) else None
        if nested_map is not None and inner is not None:
            nested_map._nested = inner
        mutate(current)
        current.replica = ""
        dot = fresh_dot(self.ctx, self.replica)
        self.entries[k] = {dot: current}
        self._nested[k] = (dot, nested_id, None if nested_map is None else nested_map._nested)
        if nested_map is not None:
            nested_map._nested = {}  # (the stored version is shared with the delta)
        if self._owner is not None:
            for d in old:
                self._owner.pop(d, None)
            self._owner[dot] = k
        return ORMap(entries={k: {dot: current}}, ctx=context_of([*old, dot]))

    def remove(self, key: Atom) -> ORMap:
        k = key_of(key)
        self._nested.pop(k, None)
        old = self.entries.pop(k, {})
        if self._owner is not None:
            for d in old:
                self._owner.pop(d, None)
        return ORMap(ctx=context_of(list(old)))

    def keys(self) -> list[Atom]:
        """Every key, typed, in canonical order (``1``, ``True`` and ``1.0`` are three keys)."""
        return [atom_of(k) for k in sorted_keys(self.entries)]

    def value(self) -> dict[Atom, Any]:
        """Key -> nested value; built in canonical key order, so that of keys Python
        identifies (``1``, ``True``) every replica shows the same one (see :meth:`keys`)."""
        out: dict[Atom, Any] = {}
        for k in sorted_keys(self.entries):
            v = self._read(k)
            if v is not None:
                out.setdefault(atom_of(k), v.value())
        return out

    def merge(self, other: Any) -> None:
        mine, theirs = self.entries, other.entries
        ctx_dots = None
        if len(mine) >= self.fast_min and len(theirs) <= 32:
            ctx_dots = small_dots(other.ctx)
        keys: set[Key] | list[Key]
        if ctx_dots is None:
            self._owner = None
            keys = [*mine, *(k for k in theirs if k not in mine)]
        else:
            if self._owner is None:
                self._owner = {d: k for k, vs in mine.items() for d in vs}
            keys = set(theirs)
            keys.update(self._owner[d] for d in ctx_dots if d in self._owner)
        owner = self._owner
        for k in keys:
            versions = mine.get(k) or {}
            before = set(versions)
            join_dotfun(versions, self.ctx, theirs.get(k, {}), other.ctx)
            added = versions.keys() - before
            for d in added:  # adopt copies: deltas may be shared (the simulator passes refs)
                versions[d] = versions[d].copy()
            if owner is not None:
                for d in before - versions.keys():
                    del owner[d]
                for d in added:
                    owner[d] = k
            if versions:
                mine[k] = versions
            else:
                mine.pop(k, None)
                self._nested.pop(k, None)
        self.ctx.merge(other.ctx)

    def gc(self, stable: VersionVector) -> None:
        """Fold the stable prefix of the map's context. Versions are not collapsed: a dot's
        nested value is immutable once shipped, so merging two versions under one dot would
        let replicas disagree about it. Nested values are not collected with ``stable``
        either: their events count in their own space (see the module docstring)."""
        compact_stable(self.ctx, stable)

    def to_wire(self) -> list[Any]:
        return [
            [
                [atom_of(k), [[d.replica, d.counter, to_tagged(vs[d])] for d in sorted(vs)]]
                for k in sorted_keys(self.entries)
                for vs in (self.entries[k],)
            ],
            self.ctx.to_wire(),
        ]

    @classmethod
    def from_wire(cls, raw: Any) -> ORMap:
        if not isinstance(raw, list) or len(raw) != 2 or not isinstance(raw[0], list):
            raise TypeError("an OR-Map is [entries, context]")
        entries: dict[Key, dict[Dot, Crdt]] = {}
        for item in raw[0]:
            if not isinstance(item, list) or len(item) != 2 or not isinstance(item[1], list):
                raise TypeError("an OR-Map entry is [key, versions]")
            versions: dict[Dot, Crdt] = {}
            for e in item[1]:
                if not isinstance(e, list) or len(e) != 3:
                    raise TypeError("an OR-Map version is [replica, counter, value]")
                versions[dot_from_wire(e[:2])] = from_tagged(e[2])
            if versions:
                entries[key_of(atom(item[0]))] = versions
        return cls(entries=entries, ctx=context_from_wire(raw[1]))
