"""Three-way merge of JSON records against their common ancestor (sans-IO, pure).

``merge(base, heads, decide)`` compares every head with the base, path by path:

* a path every head agrees on keeps that value; a path only some heads changed, all to the
  same value, takes the change (no conflict: one side edited it);
* maps recurse key by key (``spec``, ``labels``, a NIC), keyed lists recurse by their key
  (``nics`` by ``name``; order: the base's, then new keys sorted), sets merge three-way
  (an element is kept unless a head removed it, added if any head added it) and never
  conflict;
* anything else both sides changed differently is a *contest*, handed to ``decide`` (the
  policy's strategies, :mod:`.strategies`), which returns the value and how it was chosen.

What is a map, a set or an atomic unit is the record kind's schema (:func:`unit_of`); values
it does not know are maps when they are JSON objects and atomic otherwise. A unit the
schema marks atomic (``placement``, a NIC's ``address``, ``lifecycle``) is compared and
decided as a whole, so a VM never ends up with a host from one region and a zone from
another.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from novacron_core.conflict.record import Stamp, canon, same_json


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "<missing>"


MISSING: Any = _Missing()  # a key a side does not have


@dataclass(frozen=True)
class Head:
    """One concurrent write, as the strategies see it."""

    dot: str
    region: str
    hlc: Stamp
    epoch: int = 0
    source: str = "api"
    role: str = ""

    def describe(self) -> dict[str, Any]:
        return {
            "dot": self.dot,
            "region": self.region,
            "hlc": list(self.hlc),
            "epoch": self.epoch,
            "source": self.source,
        }


@dataclass
class Contest:
    """A unit two or more heads changed differently."""

    path: tuple[str, ...]
    unit: str
    base: Any  # MISSING when there is no common ancestor, or it lacked the key
    values: list[tuple[Head, Any]]  # every head's value (MISSING: the head has none)
    changed: list[tuple[Head, Any]]  # the heads that changed it from the base
    voters: list[tuple[str, Any]] = field(default_factory=list)  # every region's copy
    ancestor: bool = True  # there is a common ancestor (base MISSING: it lacked the key)

    @property
    def name(self) -> str:
        return ".".join(self.path)


@dataclass
class Decision:
    """What a strategy made of a contest."""

    value: Any
    outcome: str  # chosen | merged | siblings | parked | rolled-back
    source: str | None  # the head whose value was taken (None: a merge of several)
    why: str
    siblings: list[dict[str, Any]] | None = None


@dataclass
class Outcome:
    """A decided contest, as the audit records it."""

    path: str
    unit: str
    strategy: str
    declined: list[str]
    outcome: str
    value: Any
    source: str | None
    why: str
    overwritten: list[dict[str, Any]]  # values that did not survive: {"value", "from"}
    candidates: list[dict[str, Any]]  # every changed head's value: {"value", "from"}
    siblings: list[dict[str, Any]] | None = None
    kind: str = "field"  # field | semantic
    base: Any = MISSING  # the common ancestor's value (what a rollback returns to)
    ancestor: bool = False  # there was a common ancestor (base MISSING: it lacked the key)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "path": self.path,
            "unit": self.unit,
            "strategy": self.strategy,
            "outcome": self.outcome,
            "value": _plain(self.value),
            "from": self.source,
            "why": self.why,
            "overwritten": self.overwritten,
            "candidates": self.candidates,
            "kind": self.kind,
            "base": _plain(self.base),
            "has_base": self.ancestor,
            "base_absent": self.base is MISSING,
        }
        if self.declined:
            out["declined"] = self.declined
        if self.siblings is not None:
            out["siblings"] = self.siblings
        return out


def _plain(v: Any) -> Any:
    return None if v is MISSING else v


Decide = Callable[[Contest], Outcome]

# The VM schema: the unit of each path (the key of a keyed list element is ``*``).
VM_UNITS: dict[tuple[str, ...], str] = {
    ("spec",): "map",
    ("spec", "boot_order"): "list",
    ("lifecycle",): "lifecycle",
    ("placement",): "placement",
    ("nics",): "keyed:name",
    ("nics", "*"): "map",
    ("nics", "*", "address"): "address",
    ("labels",): "map",
    ("tags",): "set",
    ("description",): "text",
    ("stats",): "map",
    ("stats", "*"): "counter",
}


def unit_of(path: Sequence[str], value_hint: Any = None) -> str:
    """The unit of ``path`` in the VM schema: map, keyed:KEY, set, list, text, counter,
    lifecycle, placement, address, or scalar."""
    key = tuple(path)
    unit = VM_UNITS.get(key)
    if unit is None and len(key) >= 2:
        unit = VM_UNITS.get((*key[:-1], "*"))
        if unit is None and key[0] == "nics" and len(key) >= 2:
            unit = VM_UNITS.get(("nics", "*", *key[2:]))
    if unit is not None:
        return unit
    if isinstance(value_hint, dict):
        return "map"
    if isinstance(value_hint, list):
        return "list"
    return "scalar"


def _counts(path: tuple[str, ...]) -> bool:
    """``path`` is a counter or holds one (then equal changes are not one change)."""
    n = len(path)
    return unit_of(path) == "counter" or any(
        u == "counter" and len(k) > n and k[:n] == path for k, u in VM_UNITS.items()
    )


def same(a: Any, b: Any) -> bool:
    if a is MISSING or b is MISSING:
        return a is b
    if (type(a) is type(b) and isinstance(a, str | int | bool)) or a is None or b is None:
        return bool(a == b) and type(a) is type(b)
    return same_json(a, b)


@dataclass
class MergeResult:
    fields: dict[str, Any]
    outcomes: list[Outcome]
    # path -> the heads whose change the merged value took (semantic groups use it)
    contributions: dict[str, set[str]]


# Paths whose last operation is marked in the record (``marks``: path -> the dot of the
# write that last did one): a head that operated on them counts as having changed them even
# when the value came back to the ancestor's (a power cycle against a concurrent stop).
MARKED = frozenset({"lifecycle"})


def merge(
    base: Mapping[str, Any] | None,
    heads: Sequence[tuple[Head, Mapping[str, Any]]],
    decide: Decide,
    voters: Sequence[tuple[str, Mapping[str, Any]]] = (),
    keys: Sequence[str] | None = None,
    marks: tuple[Mapping[str, Any], Sequence[Mapping[str, Any]]] | None = None,
) -> MergeResult:
    """Merge the heads' fields against ``base`` (None: no common ancestor). ``marks``: the
    base's and each head's operation marks (see :data:`MARKED`)."""
    m = _Merger([h for h, _ in heads], decide, voters, base is not None)
    if marks is not None:
        m.base_marks, m.marks = dict(marks[0]), [dict(x) for x in marks[1]]
    b: Any = dict(base) if base is not None else MISSING
    vals = [dict(f) for _, f in heads]
    names = list(keys) if keys is not None else sorted({k for v in vals for k in v})
    out: dict[str, Any] = {}
    for k in names:
        sub = m.merge(
            (k,),
            MISSING if b is MISSING else b.get(k, MISSING),
            [v.get(k, MISSING) for v in vals],
        )
        if sub is not MISSING:
            out[k] = sub
    return MergeResult(out, m.outcomes, m.contributions)


class _Merger:
    def __init__(
        self,
        heads: list[Head],
        decide: Decide,
        voters: Sequence[tuple[str, Mapping[str, Any]]],
        ancestor: bool = True,
    ) -> None:
        self.ancestor = ancestor
        self.base_marks: dict[str, Any] = {}
        self.marks: list[dict[str, Any]] = [{} for _ in heads]
        self.heads = heads
        self.decide = decide
        self.voters = voters
        self.outcomes: list[Outcome] = []
        self.contributions: dict[str, set[str]] = {}

    def merge(self, path: tuple[str, ...], base: Any, vals: list[Any]) -> Any:
        first = vals[0]
        if all(same(v, first) for v in vals[1:]):
            if not same(first, base):
                self.contributions[".".join(path)] = {h.dot for h in self.heads}
            return first
        key = ".".join(path)
        marked = key in MARKED
        changed = [
            (h, v)
            for i, (h, v) in enumerate(zip(self.heads, vals, strict=True))
            if not same(v, base) or (marked and self.marks[i].get(key) != self.base_marks.get(key))
        ]
        counter = len(changed) > 1 and _counts(path)  # equal increments still add up
        if changed and not counter and all(same(v, changed[0][1]) for _, v in changed[1:]):
            self.contributions[".".join(path)] = {h.dot for h, _ in changed}
            return changed[0][1]
        hint = next((v for v in (base, *vals) if v is not MISSING and v is not None), None)
        unit = unit_of(path, hint)
        present = [v for v in vals if v is not MISSING]
        if unit == "map" and len(present) == len(vals) and all(isinstance(v, dict) for v in vals):
            return self._map(path, base if isinstance(base, dict) else {}, vals)
        if unit.startswith("keyed:") and len(present) == len(vals):
            keyed = self._keyed(path, unit[6:], base, vals)
            if keyed is not MISSING:
                return keyed
        if unit == "set" and all(isinstance(v, list) for v in present):
            return _set_merge(base, vals)
        contest = Contest(
            path,
            unit,
            base,
            list(zip(self.heads, vals, strict=True)),
            changed,
            [(r, _at(f, path)) for r, f in self.voters],
            self.ancestor,
        )
        outcome = self.decide(contest)
        self.outcomes.append(outcome)
        self.contributions[".".join(path)] = (
            {outcome.source} if outcome.source else {h.dot for h, _ in changed}
        )
        return outcome.value

    def _map(self, path: tuple[str, ...], base: dict[str, Any], vals: list[Any]) -> Any:
        out: dict[str, Any] = {}
        keys = sorted({k for v in vals for k in v} | set(base))
        for k in keys:
            sub = self.merge((*path, k), base.get(k, MISSING), [v.get(k, MISSING) for v in vals])
            if sub is not MISSING:
                out[k] = sub
        return out

    def _keyed(self, path: tuple[str, ...], key: str, base: Any, vals: list[Any]) -> Any:
        as_maps = [_by_key(v, key) for v in vals]
        b = _by_key(base, key) if base is not MISSING else {}
        if b is None or any(m is None for m in as_maps):
            return MISSING  # not a list of keyed objects: decided as a whole
        merged = self._map(path, b, as_maps)
        order = [k for k in _keys_in_order(base, key) if k in merged]
        order += sorted(k for k in merged if k not in order)
        return [merged[k] for k in order]


def _by_key(v: Any, key: str) -> dict[str, Any] | None:
    if not isinstance(v, list):
        return None
    out: dict[str, Any] = {}
    for item in v:
        if not isinstance(item, dict) or not isinstance(item.get(key), str) or item[key] in out:
            return None
        out[item[key]] = item
    return out


def _keys_in_order(v: Any, key: str) -> list[str]:
    if not isinstance(v, list):
        return []
    return [item[key] for item in v if isinstance(item, dict) and isinstance(item.get(key), str)]


def _set_merge(base: Any, vals: list[Any]) -> list[Any]:
    """Three-way set merge: base elements stay unless a head removed them; new elements
    come in if any head added them."""
    b = {canon(x): x for x in base} if isinstance(base, list) else {}
    sides = [{canon(x): x for x in v} if isinstance(v, list) else {} for v in vals]
    out: dict[str, Any] = {}
    for k, x in b.items():
        if all(k in s for s in sides):
            out[k] = x
    for s in sides:
        for k, x in s.items():
            if k not in b:
                out[k] = x
    return [out[k] for k in sorted(out)]


def _at(fields: Mapping[str, Any], path: Sequence[str]) -> Any:
    """The value at ``path`` (keyed list elements by their key); MISSING if absent."""
    cur: Any = fields
    for i, part in enumerate(path):
        if isinstance(cur, dict):
            cur = cur.get(part, MISSING)
        elif isinstance(cur, list):
            unit = unit_of(path[:i])
            key = unit[6:] if unit.startswith("keyed:") else "name"
            cur = next((x for x in cur if isinstance(x, dict) and x.get(key) == part), MISSING)
        else:
            return MISSING
        if cur is MISSING:
            return MISSING
    return cur


def value_at(fields: Mapping[str, Any], path: Sequence[str]) -> Any:
    return _at(fields, path)


def set_at(fields: dict[str, Any], path: Sequence[str], value: Any) -> None:
    """Set (or with MISSING, remove) the value at ``path`` in place; keyed list elements
    are found by their key and must exist."""
    cur: Any = fields
    for i, part in enumerate(path[:-1]):
        if isinstance(cur, dict):
            nxt = cur.get(part)
            if nxt is None:
                nxt = cur[part] = {}
            cur = nxt
        elif isinstance(cur, list):
            unit = unit_of(path[:i])
            key = unit[6:] if unit.startswith("keyed:") else "name"
            cur = next(x for x in cur if isinstance(x, dict) and x.get(key) == part)
    last = path[-1]
    if isinstance(cur, dict):
        if value is MISSING:
            cur.pop(last, None)
        else:
            cur[last] = value
