"""The eight strategies that decide a contest (a unit two heads changed differently).

Each takes the contest and returns a :class:`~.merge.Decision`, or None when it cannot
decide (the next strategy of the policy's chain is tried; the policy's ``fallback`` last).
Every strategy is a pure function of the contest, so every replica decides the same.

``lww``
    The change with the greatest writer HLC timestamp ``(wall ms, logical, region)``. Two
    writes of one region are never concurrent (its group orders them), so the region breaks
    every wall-clock tie and the order is total. Never declines.
``siblings``
    Every distinct change is kept (``siblings`` of the record, in dot order) for a client or
    a later rule to choose from; the field shows the ``lww`` value meanwhile.
``text``
    Strings: each head's edit of the ancestor (a character diff) is replayed on its own RGA
    replica of the ancestor and the replicas are merged (``sync/crdt/rga.py``): both edits
    survive, interleaved the way RGA orders concurrent inserts. Declines on non-strings.
``merge`` (semantic, type-aware)
    counters add (ancestor + every head's delta); lists merge by RGA like text (elements
    instead of characters); the VM rules: a lifecycle by precedence
    (:data:`~.record.PRECEDENCE`), a placement keeps the earlier one (``placed_at``), a NIC
    address keeps the earlier lease. Declines on plain scalars and maps.
``rollback``
    The ancestor's value (absent if it lacked the key): the last consistent checkpoint.
    Declines without a common ancestor.
``manual``
    Parks the contest in the conflicts feed until resolved (``novacron conflicts resolve``);
    the field keeps the ancestor's value meanwhile (the ``lww`` value without one).
``priority``
    The change written by the highest-ranked region (then source, then role) of
    ``priority``; declines when no change is ranked or two share the top rank.
``vote``
    The value held by a strict majority of the regions' copies of the VM (every region that
    wrote it, their latest copies, not only the concurrent ones); declines without one.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Callable
from typing import Any

from novacron_core.conflict.merge import MISSING, Contest, Decision, Head, Outcome, same
from novacron_core.conflict.policy import Policies
from novacron_core.conflict.record import PRECEDENCE, canon, stamp
from novacron_core.sync.crdt import RGA

Strategy = Callable[[Contest, Policies], Decision | None]


def _plain(v: Any) -> Any:
    return None if v is MISSING else v


def _latest(changed: list[tuple[Head, Any]]) -> tuple[Head, Any]:
    return max(changed, key=lambda hv: (hv[0].hlc, canon(_plain(hv[1]))))


def _fmt(h: Head) -> str:
    return f"{h.hlc[0]}.{h.hlc[1]}@{h.region}"


def lww(c: Contest, p: Policies) -> Decision | None:
    h, v = _latest(c.changed)
    return Decision(v, "chosen", h.dot, f"latest write: HLC {_fmt(h)} ({h.dot})")


def siblings(c: Contest, p: Policies) -> Decision | None:
    h, v = _latest(c.changed)
    kept: dict[str, dict[str, Any]] = {}
    for head, val in sorted(c.changed, key=lambda hv: hv[0].dot):
        key = canon(_plain(val))
        if key not in kept:
            kept[key] = {"value": _plain(val), "from": head.dot}
    sibs = list(kept.values())
    return Decision(
        v,
        "siblings",
        None,
        f"{len(sibs)} values kept as siblings; showing the latest ({h.dot}) meanwhile",
        sibs,
    )


def _rga_merge(base: list[Any], sides: list[tuple[str, list[Any]]]) -> list[Any]:
    """Replay each side's edit of ``base`` (a diff) on its own RGA replica, then merge."""
    root = RGA("~ancestor")
    if base:
        root.insert(0, base)
    seed = root.as_delta()
    merged = RGA.from_delta(seed, "~merged")
    for name, items in sides:
        replica = RGA.from_delta(seed, name)
        ops = difflib.SequenceMatcher(None, base, items, autojunk=False).get_opcodes()
        for tag, i1, i2, j1, j2 in reversed(ops):  # right to left: positions stay valid
            if tag in ("replace", "delete"):
                merged.merge(replica.delete(i1, i2 - i1))
            if tag in ("replace", "insert"):
                merged.merge(replica.insert(i1, items[j1:j2]))
    return list(merged.value())


def text(c: Contest, p: Policies) -> Decision | None:
    base = "" if c.base is MISSING or c.base is None else c.base
    sides = [(h.dot, v) for h, v in c.changed]
    if not isinstance(base, str) or not all(isinstance(v, str) for _, v in sides):
        return None
    merged = "".join(_rga_merge(list(base), [(d, list(v)) for d, v in sorted(sides)]))
    return Decision(
        merged, "merged", None, f"text edits of {len(sides)} writes merged by RGA (ancestor kept)"
    )


def _rank(order: list[str], value: str) -> int:
    return order.index(value) if value in order else len(order)


def merge(c: Contest, p: Policies) -> Decision | None:
    unit, changed = c.unit, c.changed
    if unit == "lifecycle" and all(isinstance(v, str) for _, v in changed):
        order = list(PRECEDENCE)
        h, v = min(changed, key=lambda hv: (_rank(order, hv[1]), hv[0].dot))
        return Decision(
            v,
            "chosen",
            h.dot,
            f"lifecycle precedence {' > '.join(PRECEDENCE)}: {v} ({h.dot}) wins",
        )
    if unit == "placement":
        return _earliest(c, "placed_at", "placement", "the earlier placement keeps the VM")
    if unit == "address":
        return _earliest(c, "lease", "address", "the earlier lease keeps the address")
    base = c.base if c.base is not MISSING else None
    nums = [v for _, v in changed]
    if unit == "counter":  # (plain numbers are not counters: the schema says which are)
        if all(type(v) is int for v in nums) and (base is None or type(base) is int):
            b = base or 0
            total = b + sum(v - b for v in nums)
            return Decision(
                total,
                "merged",
                None,
                f"counter: {b} + the {len(nums)} writes' increments = {total}",
            )
        return None
    if all(isinstance(v, list) for v in nums) and (base is None or isinstance(base, list)):
        items = [canon(x) for x in base or []]
        sides = [(h.dot, [canon(x) for x in v]) for h, v in sorted(changed, key=lambda x: x[0].dot)]
        out = [json.loads(s) for s in _rga_merge(items, sides)]
        return Decision(out, "merged", None, f"list edits of {len(sides)} writes merged by RGA")
    return None


def _earliest(c: Contest, key: str, what: str, why: str) -> Decision | None:
    def when(v: Any) -> tuple[int, tuple[int, int, str] | None]:
        t = stamp(v.get(key)) if isinstance(v, dict) else None
        # something placed/leased beats nothing; then the earlier stamp
        return (0, t) if t is not None else (1, None)

    ranked = sorted(
        c.changed, key=lambda hv: (when(hv[1])[0], when(hv[1])[1] or (0, 0, ""), hv[0].dot)
    )
    h, v = ranked[0]
    if when(v)[0] == 1:
        return None  # nobody holds one: nothing to keep
    return Decision(v, "chosen", h.dot, f"{why} ({what} from {h.dot}, {key} {v.get(key)})")


def rollback(c: Contest, p: Policies) -> Decision | None:
    if not c.ancestor:
        return None
    return Decision(c.base, "rolled-back", None, "rolled back to the common ancestor's value")


def manual(c: Contest, p: Policies) -> Decision | None:
    if c.ancestor:
        return Decision(
            c.base, "parked", None, "parked for a manual decision; the ancestor's value meanwhile"
        )
    h, v = _latest(c.changed)
    return Decision(
        v, "parked", None, f"parked for a manual decision; no ancestor: showing {h.dot} meanwhile"
    )


def priority(c: Contest, p: Policies) -> Decision | None:
    pr = p.priority
    regions, sources, roles = list(pr.regions), list(pr.sources), list(pr.roles)
    if not (regions or sources or roles):
        return None

    def rank(h: Head) -> tuple[int, int, int]:
        return (_rank(regions, h.region), _rank(sources, h.source), _rank(roles, h.role))

    ranked = sorted(c.changed, key=lambda hv: rank(hv[0]))
    top = rank(ranked[0][0])
    if top == (len(regions), len(sources), len(roles)):
        return None  # none of them is ranked
    if len(ranked) > 1 and rank(ranked[1][0]) == top and not same(ranked[1][1], ranked[0][1]):
        return None
    h, v = ranked[0]
    return Decision(v, "chosen", h.dot, f"priority: {h.region} (source {h.source}) ranks first")


def vote(c: Contest, p: Policies) -> Decision | None:
    if not c.voters:
        return None
    counts: dict[str, int] = {}
    for _, v in c.voters:
        k = _vote_key(v)
        counts[k] = counts.get(k, 0) + 1
    best = max(counts.items(), key=lambda kv: (kv[1], kv[0]))
    if best[1] * 2 <= len(c.voters):
        return None
    value = MISSING if best[0] == _ABSENT else json.loads(best[0])
    src = next((h.dot for h, v in c.changed if _vote_key(v) == best[0]), None)
    return Decision(
        value, "chosen", src, f"vote: {best[1]} of {len(c.voters)} regions' copies hold it"
    )


_ABSENT = "\x00absent"


def _vote_key(v: Any) -> str:
    return _ABSENT if v is MISSING else canon(v)


STRATEGY: dict[str, Strategy] = {
    "lww": lww,
    "siblings": siblings,
    "text": text,
    "merge": merge,
    "rollback": rollback,
    "manual": manual,
    "priority": priority,
    "vote": vote,
}


def decider(p: Policies, kind: str = "vm") -> Callable[[Contest], Outcome]:
    """The ``decide`` of a merge under policies ``p``: the path's chain, in order."""

    def decide(c: Contest) -> Outcome:
        return run(c, p.chain(kind, c.name), p)

    return decide


def run(c: Contest, chain: tuple[str, ...], p: Policies, kind: str = "field") -> Outcome:
    declined: list[str] = []
    for name in chain:
        d = STRATEGY[name](c, p)
        if d is None:
            declined.append(name)
            continue
        return _outcome(c, name, declined, d, kind)
    # every strategy declined (the fallback too): never silent, park it
    d = manual(c, p)
    assert d is not None
    return _outcome(c, "manual", declined, d, kind)


def _outcome(c: Contest, name: str, declined: list[str], d: Decision, kind: str) -> Outcome:
    candidates = [{"value": _plain(v), "from": h.dot} for h, v in c.changed]
    kept = {canon(s["value"]) for s in d.siblings or []}
    overwritten = [
        x
        for x in candidates
        if not (same(x["value"], _plain(d.value)) or canon(x["value"]) in kept)
        and d.outcome not in ("merged", "parked")
    ]
    if d.outcome == "merged":
        # a merge keeps every change's effect; what it replaced is each side's own value
        overwritten = [
            {**x, "merged": True} for x in candidates if not same(x["value"], _plain(d.value))
        ]
    return Outcome(
        path=c.name,
        unit=c.unit,
        strategy=name,
        declined=declined,
        outcome=d.outcome,
        value=d.value,
        source=d.source,
        why=d.why,
        overwritten=overwritten,
        candidates=candidates,
        siblings=d.siblings,
        kind=kind,
        base=c.base,
        ancestor=c.ancestor,
    )
