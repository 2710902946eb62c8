"""Model-based tests: 3-5 replicas of each type against the reference model (tests/sync/model.py).

Hypothesis drives ops on random replicas (mixed-type elements 1, True, 1.0 and "1"; every type
nested in an OR-Map, keys removed and re-created), deltas and full states delivered in random
order, duplicated, batched (joined before delivery) and through the wire codec (an ``Update``
record through ``novacron_core.codec``), and GC at stability points. After every step each
replica whose history is causally closed must read what the model gives for that history
(not only agree with the others); in the end every replica merges every other's state and all
must hold the same bytes and the model's value of all events.

``make test`` runs ``NOVACRON_CRDT_CASES`` (default 200) derandomized cases per type; ``make
soak`` 20x that with fresh randomness (``NOVACRON_SOAK_CRDT_CASES``). A failure prints the
shrunk steps and hypothesis' ``@reproduce_failure`` blob to replay it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from novacron_core import codec
from novacron_core.clocks import HLCTimestamp, VersionVector
from novacron_core.sync.crdt import (
    RGA,
    Crdt,
    GCounter,
    GSet,
    LWWRegister,
    MVRegister,
    ORMap,
    ORSet,
    PNCounter,
    TwoPSet,
    decode_crdt,
    encode_crdt,
)
from novacron_core.sync.messages import Update
from tests.sync.model import (
    CounterSpec,
    Ev,
    GSetSpec,
    History,
    LWWSpec,
    MVSpec,
    ORMapSpec,
    ORSetSpec,
    RGASpec,
    Spec,
    TwoPSetSpec,
    canon,
    closed,
)

ELEMS = [1, True, 1.0, "1", "a", "b", 2, b"x"]
Applied = tuple[Crdt, tuple[Any, ...]]  # (delta, the model event's payload)


@dataclass(frozen=True)
class Pool:
    """What one run's ops draw from: a few elements (and OR-Map keys), so that ops meet."""

    elems: st.SearchStrategy[Any]
    keys: tuple[Any, ...]


@dataclass(frozen=True)
class Driver:
    """How to mutate one type and describe the mutation to the model.

    ``apply(value, op, who, view)`` mutates ``value`` (replica ``who``, whose history of this
    value is ``view``) and returns (delta, the model event's payload)."""

    name: str
    cls: type[Crdt]
    spec: Spec
    ops: Callable[[Pool], st.SearchStrategy[Any]]
    apply: Callable[[Any, Any, int, History], Applied]
    read: Callable[[Any], Any]  # the implementation's value, canonical like the model's
    keys: tuple[Any, ...] = ()  # OR-Maps: the keys a run picks a few of
    # how GC finds its stable point: "ctx" (dot-based types: the meet of every replica's
    # context), "settled" (the RGA: see CrdtMachine.gc), None (nothing to collect)
    gc: str | None = None

    def __repr__(self) -> str:
        return self.name


def _elements(v: Any) -> list[Any]:
    return sorted(canon(x) for x in v.elements())


def _add_rm(v: Any, op: tuple[str, Any], who: int, view: History) -> Applied:
    what, x = op
    return (v.add(x) if what == "add" else v.remove(x)), (what, x)


def _lww(v: Any, op: tuple[Any, int, int], who: int, view: History) -> Applied:
    x, wall, logical = op
    ts = HLCTimestamp(wall, logical, f"r{who}")
    return v.assign(x, ts), ("assign", x, tuple(ts))


def _rga(v: RGA, op: tuple[str, float, str], who: int, view: History) -> Applied:
    what, frac, text = op
    doc = RGASpec.doc(view)
    n = len(doc)
    assert len(v) == n, "the replica's length differs from the model's before the op"
    if what == "del" and n:
        pos = min(int(frac * n), n - 1)
        count = min(len(text), n - pos)
        delta = v.delete(pos, count)
        ids = [doc[pos + k][0] for k in range(count)]
        assert sorted(delta.deleted()) == sorted(ids), "deleted other elements than the model"
        return delta, ("del", ids)
    pos = min(int(frac * (n + 1)), n)
    delta = v.insert(pos, text)
    elems = delta.elements()
    assert [x for _, _, x in elems] == list(text)
    origin = doc[pos - 1][0] if pos else None
    top = max((i[0] for i in RGASpec.ids(view)), default=0)
    for i, o, _ in elems:
        assert o == origin, "an inserted element's origin is not its left neighbour"
        assert i[0] > top, "an insert's id does not order after everything its replica saw"
        origin = i
    return delta, ("ins", elems)


def _map_apply(drivers: Callable[[Any], Driver]) -> Callable[..., Applied]:
    def apply(m: ORMap, op: tuple[Any, ...], who: int, view: History) -> Applied:
        if op[0] == "rm":
            return m.remove(op[1]), ("rm", op[1])
        _, key, nested_op = op
        d = drivers(key)
        nested_view = spec_of_map(drivers).view(view, key)
        out: list[tuple[Any, ...]] = []

        def mutate(value: Any) -> Any:
            delta, payload = d.apply(value, nested_op, who, nested_view)
            out.append(payload)
            return delta

        delta = m.update(key, d.cls, mutate)
        return delta, ("upd", key, nested_view | {Ev(out[0], nested_view)})

    return apply


def spec_of_map(drivers: Callable[[Any], Driver]) -> ORMapSpec:
    return ORMapSpec(lambda k: drivers(k).spec)


def _map_read(drivers: Callable[[Any], Driver]) -> Callable[[Any], Any]:
    def read(m: ORMap) -> Any:
        out = {}
        ordered = m.keys()
        for k in ordered:
            value = m.get(k)
            assert value is not None
            out[canon(k)] = drivers(k).read(value)
        return out

    return read


def _map_ops(
    keys: tuple[Any, ...], drivers: Callable[[Any], Driver]
) -> Callable[[Pool], st.SearchStrategy[Any]]:
    def ops(pool: Pool) -> st.SearchStrategy[Any]:
        key = st.sampled_from(
            [k for k in keys if any(canon(k) == canon(p) for p in pool.keys)] or keys
        )
        upd = key.flatmap(lambda k: drivers(k).ops(pool).map(lambda op: ("upd", k, op)))
        rm = key.map(lambda k: ("rm", k))
        return st.one_of(upd, upd, rm)

    return ops


def SET_OPS(pool: Pool) -> st.SearchStrategy[Any]:
    return st.tuples(st.sampled_from(["add", "add", "rm"]), pool.elems)


G_COUNTER = Driver(
    "GCounter",
    GCounter,
    CounterSpec(),
    lambda pool: st.integers(0, 5),
    lambda v, n, who, view: (v.increment(n), ("inc", n)),
    lambda v: v.value(),
)
PN_COUNTER = Driver(
    "PNCounter",
    PNCounter,
    CounterSpec(),
    lambda pool: st.integers(-5, 5),
    lambda v, n, who, view: (v.increment(n), ("inc", n)),
    lambda v: v.value(),
)
G_SET = Driver(
    "GSet",
    GSet,
    GSetSpec(),
    lambda pool: pool.elems,
    lambda v, x, who, view: (v.add(x), ("add", x)),
    _elements,
)
TWO_P_SET = Driver("TwoPSet", TwoPSet, TwoPSetSpec(), SET_OPS, _add_rm, _elements)
OR_SET = Driver("ORSet", ORSet, ORSetSpec(), SET_OPS, _add_rm, _elements, gc="ctx")
LWW = Driver(
    "LWWRegister",
    LWWRegister,
    LWWSpec(),
    lambda pool: st.tuples(pool.elems, st.integers(0, 3), st.integers(0, 2)),
    _lww,
    lambda v: canon(v.value()),
)
MV = Driver(
    "MVRegister",
    MVRegister,
    MVSpec(),
    lambda pool: pool.elems,
    lambda v, x, who, view: (v.assign(x), ("assign", x)),
    lambda v: sorted(canon(x) for x in v.value()),
    gc="ctx",
)
RGA_TEXT = Driver(
    "RGA",
    RGA,
    RGASpec(),
    lambda pool: st.tuples(
        st.sampled_from(["ins", "del"]),
        st.floats(0, 1),
        st.text(alphabet="xyz", min_size=1, max_size=4),
    ),
    _rga,
    lambda v: [canon(x) for x in v.value()],
    gc="settled",
)

# every type nested in an OR-Map (one of them an OR-Map again); the keys 1, True, 1.0 and "1"
# are four keys holding four types
_INNER = {"c": PN_COUNTER, "s": OR_SET, "q": RGA_TEXT, True: MV}


def _inner(k: Any) -> Driver:
    return _INNER[k] if type(k) is not bool else MV


INNER_MAP = Driver(
    "ORMap",
    ORMap,
    spec_of_map(_inner),
    _map_ops(("s", "q"), _inner),  # (kept small: nested twice, every op copies both levels)
    _map_apply(_inner),
    _map_read(_inner),
)
_OUTER: list[tuple[Any, Driver]] = [
    ("c", PN_COUNTER),
    ("g", G_COUNTER),
    ("e", G_SET),
    ("t", TWO_P_SET),
    ("s", OR_SET),
    ("l", LWW),
    ("m", MV),
    ("q", RGA_TEXT),
    ("o", INNER_MAP),
    (1, PN_COUNTER),
    (True, OR_SET),
    (1.0, MV),
    ("1", RGA_TEXT),
]


def _outer(k: Any) -> Driver:
    for key, d in _OUTER:
        if canon(key) == canon(k):
            return d
    raise KeyError(k)


OR_MAP = Driver(
    "ORMap-nested",
    ORMap,
    spec_of_map(_outer),
    _map_ops(tuple(k for k, _ in _OUTER), _outer),
    _map_apply(_outer),
    _map_read(_outer),
    keys=tuple(k for k, _ in _OUTER),
    gc="ctx",
)

DRIVERS = [G_COUNTER, PN_COUNTER, G_SET, TWO_P_SET, OR_SET, LWW, MV, RGA_TEXT, OR_MAP]


# ---------------------------------------------------------------- the machine


@dataclass
class Msg:
    payload: Crdt
    events: History
    state: bool  # a full state (else a delta or a join of deltas)


def _through_the_wire(value: Crdt, seq: int) -> Crdt:
    frame = codec.encode(Update("r", seq, "k", encode_crdt(value), 0, {}))
    return decode_crdt(codec.decode(frame, Update).delta)


def _stable(reps: list[Crdt]) -> VersionVector:
    """Dot-based types: the meet of every replica's context (dots every replica has seen)."""
    out: VersionVector | None = None
    for r in reps:
        vv = r.ctx.vv  # type: ignore[attr-defined]
        out = vv.copy() if out is None else out.meet(vv)
    return out or VersionVector()


class CrdtMachine(RuleBasedStateMachine):
    driver: Driver

    def __init__(self) -> None:
        super().__init__()
        self.reps: list[Crdt] = []
        self.hist: list[History] = []
        self.net: list[Msg] = []
        self.sent = 0
        self.ops: st.SearchStrategy[Any] = st.nothing()
        self.issued: list[list[tuple[int, Ev]]] = []  # per replica: (stamp, event) in order
        self.rounds: list[tuple[list[int], list[int]]] = []  # (delivered, issued) stamps

    @initialize(n=st.integers(3, 5), data=st.data())
    def start(self, n: int, data: st.DataObject) -> None:
        self.reps = [self.driver.cls(f"r{i}") for i in range(n)]  # type: ignore[call-arg]
        self.hist = [frozenset() for _ in range(n)]
        self.issued = [[] for _ in range(n)]
        few = st.lists(st.sampled_from(ELEMS), min_size=1, max_size=3, unique_by=canon)
        keys = st.lists(st.sampled_from(self.driver.keys or [None]), min_size=1, max_size=3)
        pool = Pool(st.sampled_from(data.draw(few, label="elements")), tuple(data.draw(keys)))
        self.ops = self.driver.ops(pool)

    def _who(self, data: st.DataObject) -> int:
        return data.draw(st.integers(0, len(self.reps) - 1), label="replica")

    @rule(data=st.data())
    def mutate(self, data: st.DataObject) -> None:
        who = self._who(data)
        if not closed(self.hist[who]):
            return  # the model defines ops on causally closed histories only
        op = data.draw(self.ops, label="op")
        delta, payload = self.driver.apply(self.reps[who], op, who, self.hist[who])
        ev = Ev(payload, self.hist[who])
        self.hist[who] = self.hist[who] | {ev}
        self.issued[who].append((delta.top(f"r{who}"), ev))
        self.net.append(Msg(delta.copy(), frozenset({ev}), False))

    @rule(data=st.data())
    def send_state(self, data: st.DataObject) -> None:
        src = self._who(data)
        self.net.append(Msg(self.reps[src].copy(), self.hist[src], True))

    @precondition(lambda self: self.net)
    @rule(data=st.data(), wire=st.booleans(), keep=st.booleans())
    def deliver(self, data: st.DataObject, wire: bool, keep: bool) -> None:
        i = data.draw(st.integers(0, len(self.net) - 1), label="message")
        dst = self._who(data)
        msg = self.net[i] if keep else self.net.pop(i)
        self.sent += 1
        payload = _through_the_wire(msg.payload, self.sent) if wire else msg.payload.copy()
        self.reps[dst].merge(payload)
        self.hist[dst] = self.hist[dst] | msg.events

    @precondition(lambda self: self.net)
    @rule(data=st.data())
    def broadcast(self, data: st.DataObject) -> None:
        """One message to every replica, in a random order (how most deltas travel)."""
        msg = self.net.pop(data.draw(st.integers(0, len(self.net) - 1), label="message"))
        for dst in data.draw(st.permutations(range(len(self.reps))), label="order"):
            self.sent += 1
            self.reps[dst].merge(_through_the_wire(msg.payload, self.sent))
            self.hist[dst] = self.hist[dst] | msg.events

    @precondition(lambda self: sum(not m.state for m in self.net) >= 2)
    @rule(data=st.data())
    def batch(self, data: st.DataObject) -> None:
        deltas = [i for i, m in enumerate(self.net) if not m.state]
        i, j = data.draw(st.lists(st.sampled_from(deltas), min_size=2, max_size=2, unique=True))
        a, b = self.net[i], self.net[j]
        joined = a.payload.copy()
        joined.merge(b.payload)
        self.net = [m for k, m in enumerate(self.net) if k not in (i, j)]
        self.net.append(Msg(joined, a.events | b.events, False))

    @rule()
    def sync_all(self) -> None:
        """A quiet moment: every replica merges every other's state (everything stable)."""
        self._exchange()

    def _exchange(self) -> None:
        """Everyone gets everything: the others' states into the first replica, then its state
        into each of the others (all through the wire)."""
        first, *others = self.reps
        for src in others:
            self.sent += 1
            first.merge(_through_the_wire(src, self.sent))
        for dst in others:
            self.sent += 1
            dst.merge(_through_the_wire(first, self.sent))
        everything = frozenset().union(*self.hist)
        self.hist = [everything for _ in self.reps]

    @rule(data=st.data())
    def gc(self, data: st.DataObject) -> None:
        who = self._who(data)
        if self.driver.gc == "ctx":
            self.reps[who].gc(_stable(self.reps))
        elif self.driver.gc == "settled":
            self.reps[who].gc(self._settled())

    def _settled(self) -> VersionVector:
        """What the engine passes an RGA: per replica, the stamp up to which every replica
        has all its ops, taken at a round whose ops (the highest stamp each replica had
        issued then) every replica has by now: so every op any replica made before applying
        those is here too (SyncNode._collect, Crdt.SETTLES)."""
        delivered = []
        for ops in self.issued:
            top = 0
            for stamp, ev in ops:
                if not all(ev in h for h in self.hist):
                    break
                top = stamp
            delivered.append(top)
        issued = [ops[-1][0] if ops else 0 for ops in self.issued]
        self.rounds.append((delivered, issued))
        usable = [0] * len(self.reps)
        for then, made in self.rounds:
            if all(d >= m for d, m in zip(delivered, made, strict=True)):
                usable = then
        return VersionVector({f"r{i}": s for i, s in enumerate(usable)})

    @invariant()
    def reads_what_the_model_gives(self) -> None:
        for who, (rep, h) in enumerate(zip(self.reps, self.hist, strict=True)):
            if closed(h):
                got, want = self.driver.read(rep), self.driver.spec.value(h)
                assert got == want, f"replica r{who}: {got!r} != model {want!r}"

    def teardown(self) -> None:
        if not self.reps:
            return
        self._exchange()
        want = self.driver.spec.value(self.hist[0])
        wire = encode_crdt(self.reps[0])
        for who, rep in enumerate(self.reps):
            assert encode_crdt(rep) == wire, f"replica r{who} holds other bytes"
            assert self.driver.read(rep) == want


CASES = int(os.environ.get("NOVACRON_CRDT_CASES", "200"))


def _run(driver: Driver, cases: int, derandomize: bool = True) -> None:
    machine = type(f"{driver.name}Machine", (CrdtMachine,), {"driver": driver})
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=cases,
            stateful_step_count=25,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
            derandomize=derandomize,
            database=None,
        ),
    )


@pytest.mark.parametrize("driver", DRIVERS, ids=repr)
def test_replicas_read_what_the_model_gives(driver: Driver) -> None:
    _run(driver, CASES)


@pytest.mark.soak
@pytest.mark.skipif(not os.environ.get("NOVACRON_SOAK"), reason="make soak only")
@pytest.mark.parametrize("driver", DRIVERS, ids=repr)
def test_soak_replicas_read_what_the_model_gives(driver: Driver) -> None:
    _run(driver, int(os.environ.get("NOVACRON_SOAK_CRDT_CASES", str(CASES * 20))), False)
