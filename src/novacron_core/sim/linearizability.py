"""Linearizability checking: Wing & Gong's search with Lowe's memoization, as in Porcupine.

Histories are partitioned per key (linearizability is compositional: a history is
linearizable iff each key's sub-history is), which keeps each search small. The search walks
a doubly linked list of call/return events; at a call it tries to linearize that operation
next (if the model accepts its result), at a return it must backtrack. A cache of
(set of linearized ops, model state) prunes states already explored.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any, Protocol

from novacron_core.sim.history import History, Op

UNKNOWN = object()  # the result of an op whose outcome the client never learned


class Model(Protocol):
    def init(self) -> Hashable: ...

    def step(self, state: Hashable, op: Op, result: Any) -> tuple[bool, Hashable]:
        """May ``op`` with ``result`` happen in ``state``? And the state after it."""
        ...

    def partition(self, op: Op) -> Hashable: ...

    def has_effect(self, op: Op) -> bool:
        """False for reads: an unacknowledged read constrains nothing and is dropped."""
        ...


class KVModel:
    """A map of registers: put/get/delete/cas. State per key: the value, ``None`` = absent.

    cas's value is ``(expected, new)`` and its result is whether it swapped.
    """

    def init(self) -> Hashable:
        state: Hashable = None
        return state

    def partition(self, op: Op) -> Hashable:
        key: Hashable = op.key
        return key

    def has_effect(self, op: Op) -> bool:
        return op.kind != "get"

    def step(self, state: Hashable, op: Op, result: Any) -> tuple[bool, Hashable]:
        kind = op.kind
        if kind == "put":
            return True, op.value
        if kind == "get":
            return (result is UNKNOWN or result == state), state
        if kind == "delete":
            return True, None
        if kind == "cas":
            expected, new = op.value
            swapped = state == expected
            if result is UNKNOWN:
                return True, new if swapped else state
            return bool(result) == swapped, new if swapped else state
        raise ValueError(f"KVModel has no operation {kind!r}")


@dataclass
class CheckResult:
    ok: bool
    key: Any = None
    explanation: str = ""
    ops_checked: int = 0
    exhausted: bool = False  # search budget ran out: neither proven nor refuted

    def __bool__(self) -> bool:
        return self.ok


class _Entry:
    __slots__ = ("is_call", "match", "next", "op", "prev", "time")

    def __init__(self, op: Op, is_call: bool, time: float) -> None:
        self.op = op
        self.is_call = is_call
        self.time = time
        self.match: _Entry | None = None
        self.prev: _Entry | None = None
        self.next: _Entry | None = None


def check_linearizable(
    history: History | list[Op], model: Model | None = None, max_steps: int = 2_000_000
) -> CheckResult:
    """Check every partition (key) of ``history``; the first failing key is reported."""
    model = model or KVModel()
    ops = history.ops if isinstance(history, History) else history
    parts: dict[Hashable, list[Op]] = defaultdict(list)
    for op in ops:
        if op.status == "fail" or (op.status != "ok" and not model.has_effect(op)):
            continue
        parts[model.partition(op)].append(op)
    total = 0
    for key in sorted(parts, key=repr):
        part = parts[key]
        total += len(part)
        res = _check_part(part, model, max_steps)
        if not res.ok:
            res.key = key
            res.ops_checked = total
            return res
    return CheckResult(True, ops_checked=total)


def _check_part(ops: list[Op], model: Model, max_steps: int) -> CheckResult:
    events: list[tuple[float, int, int, _Entry]] = []
    for i, op in enumerate(ops):
        call = _Entry(op, True, op.call)
        ret = _Entry(op, False, op.ret if op.status == "ok" else math.inf)
        call.match, ret.match = ret, call
        # at equal times calls sort before returns: the permissive reading of a tie
        events.append((call.time, 0, i, call))
        events.append((ret.time, 1, i, ret))
    events.sort(key=lambda e: (e[0], e[1], e[2]))
    head = _Entry(ops[0], True, -math.inf)  # sentinel
    prev = head
    for *_, e in events:
        prev.next, e.prev = e, prev
        prev = e
    index = {id(op): i for i, op in enumerate(ops)}

    state: Hashable = model.init()
    linearized = 0
    cache: set[tuple[int, Hashable]] = set()
    stack: list[tuple[_Entry, Hashable]] = []
    entry = head.next
    best = 0
    steps = 0
    while head.next is not None:
        steps += 1
        if steps > max_steps:
            return CheckResult(False, explanation="search budget exhausted", exhausted=True)
        assert entry is not None
        if entry.is_call:
            op = entry.op
            result = op.result if op.status == "ok" else UNKNOWN
            ok, new_state = model.step(state, op, result)
            bit = 1 << index[id(op)]
            if ok and (linearized | bit, new_state) not in cache:
                cache.add((linearized | bit, new_state))
                stack.append((entry, state))
                state = new_state
                linearized |= bit
                _lift(entry)
                best = max(best, len(stack))
                entry = head.next
            else:
                entry = entry.next
        else:
            if not stack:
                return CheckResult(False, explanation=_explain(ops, best, entry.op))
            top, state = stack.pop()
            linearized &= ~(1 << index[id(top.op)])
            _unlift(top)
            entry = top.next
    return CheckResult(True)


def _lift(call: _Entry) -> None:
    ret = call.match
    assert call.prev is not None
    assert ret is not None
    assert ret.prev is not None
    call.prev.next = call.next
    if call.next is not None:
        call.next.prev = call.prev
    ret.prev.next = ret.next
    if ret.next is not None:
        ret.next.prev = ret.prev


def _unlift(call: _Entry) -> None:
    ret = call.match
    assert call.prev is not None
    assert ret is not None
    assert ret.prev is not None
    ret.prev.next = ret
    if ret.next is not None:
        ret.next.prev = ret
    call.prev.next = call
    if call.next is not None:
        call.next.prev = call


def _explain(ops: list[Op], best: int, stuck: Op) -> str:
    ordered = sorted(ops, key=lambda o: o.call)
    lines = [
        f"no linearization: at most {best} of {len(ops)} ops could be ordered; "
        f"stuck before {stuck!r} returned",
        "ops of this key:",
        *(f"  {op!r}" for op in ordered[:40]),
    ]
    if len(ordered) > 40:
        lines.append(f"  ... {len(ordered) - 40} more")
    return "\n".join(lines)
