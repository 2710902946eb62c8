"""A sequential reference model of each CRDT type's documented semantics, over histories.

Written from the types' docstrings and docs/sync.md, not from their code. A replica's state in
the model is its *history*: the set of events (operations) it has received. Each event keeps
its *past*, the history of the replica that issued it, so ``observed(e)`` (the transitive
closure of pasts) is everything e's issuer had seen. A type's value is a function of a
causally closed history (every event's past is in it):

* counters: the sum of the increments;
* G-Set: every added element; 2P-Set: added minus ever removed;
* OR-Set (observed-remove, add-wins): an element is present iff one of the add/remove events
  on it that no other event on it observed (the *maximal* ones) is an add;
* LWW-Register: the value of the assignment with the highest (timestamp, encoded value);
* MV-Register: the values of the maximal assignments;
* OR-Map: a key's versions are its update events; a version survives unless another event on
  the key (update or remove) observed it; an update carries the key's nested history as its
  issuer saw it (the union of the surviving versions' nested histories) plus its own nested
  event; a key is present iff a version survives, and its value is the nested type's value of
  the union of the surviving versions' nested histories;
* RGA: insert events add elements (id, origin, value), ids ``(lamport, replica)``; the document
  is the tree of origins read depth first, children in descending id order (a later insert at
  the same spot comes first), deleted elements hidden.

Elements, keys and values are compared by typed identity (``1``, ``True``, ``1.0`` and ``"1"``
are four different elements), as the wire encodes them.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import msgpack

_ids = itertools.count(1)


def canon(x: Any) -> tuple[str, bytes]:
    """Typed identity of an atom: its Python type and its msgpack bytes."""
    return (type(x).__name__, msgpack.packb(x, use_bin_type=True))


@dataclass(frozen=True, eq=False)
class Ev:
    """One operation: ``op`` (type-specific payload) and the events its issuer had seen."""

    op: tuple[Any, ...]
    past: frozenset[Ev]
    id: int = field(default_factory=lambda: next(_ids))
    _seen: list[frozenset[Ev]] = field(default_factory=list, repr=False)

    def observed(self) -> frozenset[Ev]:
        if not self._seen:
            out: set[Ev] = set(self.past)
            for p in self.past:
                out |= p.observed()
            self._seen.append(frozenset(out))
        return self._seen[0]


History = frozenset[Ev]


def closed(history: Iterable[Ev]) -> bool:
    h = set(history)
    return all(e.past <= h for e in h)


def maximal(events: Iterable[Ev]) -> list[Ev]:
    """The events no other event of the set observed."""
    evs = list(events)
    seen: set[Ev] = set()
    for e in evs:
        seen |= e.observed()
    return [e for e in evs if e not in seen]


# ---------------------------------------------------------------- specs
# Each spec: ``value(history)`` -> a canonical value, comparable with ``impl_value(replica)``.


class Spec:
    def value(self, history: Iterable[Ev]) -> Any:
        raise NotImplementedError


class CounterSpec(Spec):
    """op: ("inc", n)"""

    def value(self, history: Iterable[Ev]) -> Any:
        return sum(e.op[1] for e in history)


class GSetSpec(Spec):
    """op: ("add", x)"""

    def value(self, history: Iterable[Ev]) -> Any:
        return sorted({canon(e.op[1]) for e in history})


class TwoPSetSpec(Spec):
    """op: ("add", x) | ("rm", x)"""

    def value(self, history: Iterable[Ev]) -> Any:
        added = {canon(e.op[1]) for e in history if e.op[0] == "add"}
        removed = {canon(e.op[1]) for e in history if e.op[0] == "rm"}
        return sorted(added - removed)


class ORSetSpec(Spec):
    """op: ("add", x) | ("rm", x)"""

    def value(self, history: Iterable[Ev]) -> Any:
        by_elem: dict[Any, list[Ev]] = defaultdict(list)
        for e in history:
            by_elem[canon(e.op[1])].append(e)
        return sorted(
            k for k, evs in by_elem.items() if any(e.op[0] == "add" for e in maximal(evs))
        )


class LWWSpec(Spec):
    """op: ("assign", value, (wall_ms, logical, replica))"""

    def value(self, history: Iterable[Ev]) -> Any:
        evs = list(history)
        if not evs:
            return canon(None)
        best = max(evs, key=lambda e: (e.op[2], msgpack.packb(e.op[1], use_bin_type=True)))
        return canon(best.op[1])


class MVSpec(Spec):
    """op: ("assign", value)"""

    def value(self, history: Iterable[Ev]) -> Any:
        return sorted(canon(e.op[1]) for e in maximal(history))


class RGASpec(Spec):
    """op: ("ins", [(id, origin, value), ...]) | ("del", [id, ...])"""

    def value(self, history: Iterable[Ev]) -> Any:
        return [canon(v) for _, v in self.doc(history)]

    @staticmethod
    def doc(history: Iterable[Ev]) -> list[tuple[Any, Any]]:
        """Visible (id, value) in document order."""
        elems: dict[Any, tuple[Any, Any]] = {}
        deleted: set[Any] = set()
        for e in history:
            if e.op[0] == "ins":
                for i, o, v in e.op[1]:
                    elems[i] = (o, v)
            else:
                deleted.update(e.op[1])
        children: dict[Any, list[Any]] = defaultdict(list)
        for i, (o, _) in elems.items():
            children[o].append(i)
        out: list[tuple[Any, Any]] = []
        stack = sorted(children[None])  # pop() takes the largest id first
        while stack:
            i = stack.pop()
            if i not in deleted:
                out.append((i, elems[i][1]))
            stack.extend(sorted(children[i]))
        return out

    @staticmethod
    def ids(history: Iterable[Ev]) -> set[Any]:
        return {i for e in history if e.op[0] == "ins" for i, _, _ in e.op[1]}


@dataclass
class ORMapSpec(Spec):
    """op: ("upd", key, nested history after the update) | ("rm", key).
    ``spec_of(key)`` is the nested type's spec (a key always holds one type)."""

    spec_of: Callable[[Any], Spec]

    def versions(self, history: Iterable[Ev], key: Any) -> list[Ev]:
        on_key = [e for e in history if canon(e.op[1]) == canon(key)]
        return [e for e in maximal(on_key) if e.op[0] == "upd"]

    def view(self, history: Iterable[Ev], key: Any) -> History:
        """The key's nested history as a replica with this history reads it."""
        out: set[Ev] = set()
        for v in self.versions(history, key):
            out |= v.op[2]
        return frozenset(out)

    def value(self, history: Iterable[Ev]) -> Any:
        h = list(history)
        keys = {canon(e.op[1]): e.op[1] for e in h}
        out = {}
        for ck, key in keys.items():
            if self.versions(h, key):
                out[ck] = self.spec_of(key).value(self.view(h, key))
        return out
