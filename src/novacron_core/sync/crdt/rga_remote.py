"""Remote edits of an RGA: runs of inserts placed by the skip rule, deletes by id (``rga.py``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from novacron_core.sync.crdt.rga_chunks import GONE, MASK, MAX, SHIFT, STEP, Chunk
from novacron_core.sync.crdt.rga_delta import Stamp
from novacron_core.sync.crdt.rga_delta import earlier as _earlier
from novacron_core.sync.crdt.rga_wire import Id, Run

if TYPE_CHECKING:
    from novacron_core.sync.crdt.rga import RGA


def integrate(doc: RGA, run: Run) -> None:
    todo = _integrate_one(doc, run)
    while todo:  # a loop, not recursion: a long run delivered backwards frees a chain
        todo.extend(_integrate_one(doc, todo.pop()))


def typed(doc: RGA, run: Run) -> bool:
    """The common case of ``integrate`` on its own (a remote keystroke): one visible element,
    new here, whose origin is here, nothing pending, landing inside a chunk with room.
    False, having changed nothing, for anything else."""
    name, lam, origin, vals, stamp, rank = run
    if len(vals) != 1 or origin is None or stamp is not None or rank is not None:
        return False
    v = vals[0]
    idx, where = doc._idx, doc._where
    r = idx.get(name)
    ro = idx.get(origin[1])
    if v is None or r is None or ro is None or where is None or doc._pending or doc._pending_del:
        return False
    x = lam << SHIFT | r
    c = where.get(origin[0] << SHIFT | ro)
    if c is None or x in where or doc._floor.get(r, 0) >= lam:
        return False
    ids = c.ids
    end = len(ids)
    j = ids.index(origin[0] << SHIFT | ro) + 1
    if end >= MAX:
        return False
    if j < end:  # skip the elements that order after this one (later inserts at this spot)
        names, ranks = doc._names, doc._rank
        while j < end:
            y = ids[j]
            if ranks:
                y = ranks.get(y, y)
            yl = y >> SHIFT
            if yl > lam or (yl == lam and names[y & MASK] > name):
                j += 1
            else:
                break
        else:
            return False  # (it may go on in the next chunk)
    else:
        nxt = c.next
        if nxt is not None and nxt.ids:
            return False  # (whether it goes past the next chunk's first element: integrate)
    if lam > doc._clock:
        doc._clock = lam
    ids.insert(j, x)
    c.origins.insert(j, origin[0] << SHIFT | ro)
    c.vals.insert(j, v)
    c.stamps.insert(j, None)
    c.vis += 1
    where[x] = c
    doc._len += 1
    cur = doc._cur
    if c is not cur and c.label < cur.label:  # (landed before the cursor)
        doc._cstart += 1
    return True


def _integrate_one(doc: RGA, run: Run) -> list[Run]:
    name, lam, origin, vals, stamp, rank = run
    n = len(vals)
    r = doc._idx.get(name)
    if r is None:
        r = doc._intern(name)
    where = doc._where if doc._where is not None else doc._index()
    if lam + n - 1 > doc._clock:
        doc._clock = lam + n - 1
    if stamp is not None and stamp[0] > doc._clock:
        doc._clock = stamp[0]
    first = lam << SHIFT | r
    if n == 1:
        if first in where or doc._floor.get(r, 0) >= lam:
            return []  # (here already, or collected here)
        ids = [first]
    else:
        ids = list(range(first, (lam + n) << SHIFT | r, STEP))
        if doc._floor.get(r, 0) >= lam or not where.keys().isdisjoint(ids):
            return _integrate_parts(doc, run, ids)
    if origin is None:
        o = None
    else:
        ro = doc._idx.get(origin[1])
        o = origin[0] << SHIFT | (doc._intern(origin[1]) if ro is None else ro)
        if o not in where:
            if not doc._collected(origin):
                waiting = doc._pending.setdefault(origin, [])
                if all(w[:2] != (name, lam) or len(w[3]) != n for w in waiting):
                    waiting.append(run)
            return []  # (an origin collected here has no unknown children left: stale)
    if rank is None:
        c, j = _place(doc, o, lam, name)
    else:
        c, j = _place(doc, o, rank[0], rank[1])
        doc._rank[first] = doc._iid(rank)
    if n == 1 and vals[0] is not None and len(c.ids) < MAX:  # (typing: one element)
        c.ids.insert(j, first)
        c.origins.insert(j, o)
        c.vals.insert(j, vals[0])
        c.stamps.insert(j, None)
        c.vis += 1
        where[first] = c
        nvis = 1
    else:
        ds = doc._stamp(stamp)
        values = list(vals)
        stamps: list[int | None] = [None] * n
        dead = [k for k, v in enumerate(values) if v is None]
        for k in dead:
            values[k] = GONE
            stamps[k] = ds
        origins: list[int | None] = [o]
        origins += ids[:-1]
        doc._splice(c, j, ids, origins, values, stamps)
        nvis = n - len(dead)
    doc._len += nvis
    cur = doc._cur
    if nvis and c is not cur and c.label < cur.label:  # (landed before the cursor)
        doc._cstart += nvis
    released: list[Run] = []
    if doc._pending_del or doc._pending:
        for k in range(n):
            t = (lam + k, name)
            if t in doc._pending_del:
                delete_id(doc, t, doc._pending_del.pop(t))
            released += doc._pending.pop(t, ())
    return released


def _integrate_parts(doc: RGA, run: Run, ids: list[int]) -> list[Run]:
    """A run of which some elements are here (or were collected): integrate the rest as
    smaller runs, each after the element before it."""
    name, lam, origin, vals, stamp, rank = run
    where = doc._index()
    floor = doc._floor.get(doc._idx[name], 0)
    out: list[Run] = []
    k, n = 0, len(vals)
    while k < n:
        if ids[k] in where or lam + k <= floor:
            k += 1
            continue
        e = k
        while e < n and ids[e] not in where and lam + e > floor:
            e += 1
        o = origin if k == 0 else (lam + k - 1, name)
        out.append((name, lam + k, o, vals[k:e], stamp, rank if k == 0 else None))
        k = e
    return out


def _place(doc: RGA, o: int | None, lam: int, name: str) -> tuple[Chunk, int]:
    """Where an element ``(lam, name)`` with origin ``o`` goes: right after the origin,
    past the elements that order after it (later inserts at the same spot)."""
    names, rank = doc._names, doc._rank
    c: Chunk
    if o is None:
        c, j = doc._head, 0
    else:
        c = doc._index()[o]
        j = c.ids.index(o) + 1
    while True:
        ids = c.ids
        end = len(ids)
        while j < end:
            x = ids[j]
            if rank:
                x = rank.get(x, x)
            xl = x >> SHIFT
            if xl > lam or (xl == lam and names[x & MASK] > name):
                j += 1
            else:
                return c, j
        nxt = c.next
        if nxt is None or not nxt.ids:
            return c, j
        x = nxt.ids[0]
        if rank:
            x = rank.get(x, x)
        xl = x >> SHIFT
        if not (xl > lam or (xl == lam and names[x & MASK] > name)):
            return c, j
        c, j = nxt, 0


def delete_range(doc: RGA, name: str, lam: int, m: int, stamp: Stamp) -> None:
    """Delete ``(lam, name) .. (lam + m - 1, name)``: a stretch that sits together in a
    chunk and is all visible is marked at once, anything else one by one."""
    r = doc._idx.get(name)
    where = doc._index()
    st = doc._stamp(stamp)
    if stamp is not None and stamp[0] > doc._clock:
        doc._clock = stamp[0]
    k = 0
    while k < m:
        x = -1 if r is None else (lam + k) << SHIFT | r
        c = where.get(x)
        if c is not None:
            j = c.ids.index(x)
            take = min(m - k, len(c.ids) - j)
            vals = c.vals
            if (
                take > 1
                and c.ids[j : j + take] == list(range(x, x + take * STEP, STEP))
                and GONE not in vals[j : j + take]
            ):
                vals[j : j + take] = [GONE] * take
                c.stamps[j : j + take] = [st] * take
                c.vis -= take
                doc._len -= take
                if doc._before_cursor(c):
                    doc._cstart -= take
                k += take
                continue
        delete_id(doc, (lam + k, name), stamp)
        k += 1


def delete_id(doc: RGA, t: Id, stamp: Stamp) -> None:
    if stamp is not None and stamp[0] > doc._clock:
        doc._clock = stamp[0]
    r = doc._idx.get(t[1])
    x = -1 if r is None else t[0] << SHIFT | r
    c = doc._index().get(x)
    if c is None:
        if not doc._collected(t) and (
            t not in doc._pending_del or _earlier(stamp, doc._pending_del[t])
        ):
            doc._pending_del[t] = stamp
        return
    j = c.ids.index(x)
    if c.vals[j] is GONE:
        old = c.stamps[j]
        if _earlier(stamp, doc._tstamp(-1 if old is None else old)):
            c.stamps[j] = doc._stamp(stamp)
        return
    c.vals[j] = GONE
    c.stamps[j] = doc._stamp(stamp)
    c.vis -= 1
    doc._len -= 1
    if doc._before_cursor(c):
        doc._cstart -= 1
