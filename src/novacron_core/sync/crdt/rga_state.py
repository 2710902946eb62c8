"""An RGA's whole state: the document as runs, built back from runs, merged into another."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from novacron_core.sync.crdt.rga_chunks import GONE, MASK, SHIFT, STEP, Chunk
from novacron_core.sync.crdt.rga_wire import Run

if TYPE_CHECKING:
    from novacron_core.sync.crdt.rga import RGA


def runs(doc: RGA) -> Iterator[Run]:
    """The document as runs, in document order (tombstone runs share one stamp)."""
    rank = doc._rank
    cur: list[Any] | None = None  # [replica#, lamport, origin, values, stamp, rank, last id]
    for c in doc._chunks():
        for x, o, v, st in zip(c.ids, c.origins, c.vals, c.stamps, strict=True):
            s = (-1 if st is None else st) if v is GONE else None
            if (
                cur is not None
                and o == cur[6]
                and x == cur[6] + STEP
                and (v is GONE) == (cur[3][-1] is None)
                and s == cur[4]
                and x not in rank
            ):
                cur[3].append(None if v is GONE else v)
                cur[6] = x
                continue
            if cur is not None:
                yield _run_out(doc, cur)
            v = None if v is GONE else v
            cur = [x & MASK, x >> SHIFT, o, [v], s, rank.get(x), x]
    if cur is not None:
        yield _run_out(doc, cur)


def _run_out(doc: RGA, cur: list[Any]) -> Run:
    r, lam, o, vals, s, k, _ = cur
    origin = None if o is None else doc._tid(o)
    stamp = None if s is None else doc._tstamp(s)
    return (doc._names[r], lam, origin, vals, stamp, None if k is None else doc._tid(k))


def merge_state(doc: RGA, other: RGA) -> None:
    if not (doc._head.ids or doc._head.next or doc._pending or doc._pending_del or doc._floor):
        fresh = type(doc).from_wire(other.to_wire())  # (an empty replica takes it as it is)
        for slot in type(doc).__slots__:
            setattr(doc, slot, getattr(fresh, slot))
        return
    for run in other._runs():
        doc._integrate(run)
        name, lam, _, vals, stamp, _ = run
        if vals[0] is None:  # a tombstone run (they share one stamp)
            doc._delete_range(name, lam, len(vals), stamp)
    for run in other._waiting():
        doc._integrate(run)
    for t, s in other._pending_del.items():
        doc._delete_id(t, s)
    if other._floor:
        theirs = other._index()
        floor = {other._names[r]: lam for r, lam in other._floor.items()}
        names, idx = doc._names, other._idx

        def collected_there(x: int) -> bool:
            name, lam = names[x & MASK], x >> SHIFT
            if lam > floor.get(name, 0):
                return False
            r = idx.get(name)
            return r is None or (lam << SHIFT | r) not in theirs

        doc._purge(lambda c: [j for j, x in enumerate(c.ids) if collected_there(x)] or None)
        for name, lam in floor.items():
            r = doc._intern(name)
            if lam > doc._floor.get(r, 0):
                doc._floor[r] = lam
    if other._clock > doc._clock:
        doc._clock = other._clock


def build(doc: RGA, runs: list[Run]) -> None:
    """A state's document, in document order: appended as it is (ids, origins and values
    are checked; the order is the sender's, as its elements are)."""
    seen: set[int] = set()
    ids: list[int] = []
    origins: list[int | None] = []
    vals: list[Any] = []
    stamps: list[int | None] = []
    clock = 0
    for name, lam, origin, values, stamp, rank in runs:
        n = len(values)
        r = doc._intern(name)
        first = lam << SHIFT | r
        run_ids = [first] if n == 1 else list(range(first, (lam + n) << SHIFT | r, STEP))
        o = None if origin is None else doc._iid(origin)
        if o is not None and o not in seen:
            raise ValueError("an RGA state names an origin before listing it")
        if not seen.isdisjoint(run_ids):
            raise ValueError("an RGA state lists an element twice")
        seen.update(run_ids)
        if rank is not None:
            doc._rank[first] = doc._iid(rank)
        ids += run_ids
        origins.append(o)
        origins += run_ids[:-1]
        if type(values) is str:
            vals += values
            stamps += [None] * n
        else:
            vals += [GONE if v is None else v for v in values]
            st = doc._stamp(stamp)
            stamps += [st if v is None else None for v in values]
        clock = max(clock, lam + n - 1, 0 if stamp is None else stamp[0])
    doc._clock = max(doc._clock, clock)
    doc._head = doc._tail = doc._cur = Chunk([], [], [])
    doc._cstart = 0
    doc._where = {}
    doc._splice(doc._head, 0, ids, origins, vals, stamps)
    doc._len = sum(c.vis for c in doc._chunks())
