"""RGA: a replicated growable array (Roh et al.) for sequences and text.

Every element has a unique id ``(lamport, replica)`` and remembers its *origin*, the element
it was inserted after. A replica integrates a remote insert right after its origin, skipping
the elements with larger ids: those were inserted later at the same spot (or descend from such
an insert), so every replica orders concurrent inserts identically. Ids order after
everything their replica had seen (a Lamport clock), which is what makes the skip rule right.

Deletes leave tombstones, needed to place concurrent inserts, and carry a *stamp*: the
deleting replica's next Lamport value. :meth:`RGA.gc` drops a tombstone once its delete and
its insert are causally stable *and settled*: every replica applied the delete, and every
insert any replica made before applying it (the only inserts that can name the tombstone as
origin) is applied here too. The engine provides that point (``Crdt.SETTLES``: stability one
report round later, see ``SyncNode._collect``). A collected tombstone's only child takes its
place and its *rank* (the id it sorts by among siblings), so the document and every insert
that can still arrive read the same (``rga_gc.py``); a tombstone with several children stays.
The *GC floor* ``replica -> lamport`` records that every insert of that replica up to that
lamport is integrated here: an insert it covers that is not here was collected (a late
duplicate is ignored), and a peer's state whose floor covers an element it lacks collected it
(the element goes here too). Memory after GC is that of the live text plus the few tombstones
still needed (figures in docs/sync.md).

Local index: the document is a doubly linked list of chunks of at most ``MAX`` elements
(tombstones included) that know their visible length, plus a cursor (chunk, visible elements
before it) left at the last local edit: a position lookup walks from the cursor, the head or
the tail, whichever is nearest, then scans within one chunk if it holds tombstones. Chunks
carry order labels, so a remote edit tells whether it lands before the cursor without an index
into the chunk list; an id lookup goes through ``id -> chunk`` (built on the first remote
edit: a replica that only edits locally never pays for it). A multi-element insert is spliced
with list slices and re-cut into chunks of ``PIECE``; a range delete walks the chunks it
touches. Remote inserts arrive as runs (a whole paste at once) and are placed in one splice.

Out-of-order deltas are fine: an insert whose origin is unknown waits until the origin
arrives, a delete of an unknown id is remembered until the element arrives.

Modules: ``rga_chunks`` (the chunk list), ``rga_delta`` (``RgaDelta``), ``rga_remote`` (remote
edits), ``rga_state`` (whole states as runs), ``rga_gc`` (removing tombstones), ``rga_wire``
(the encoding, both versions).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from novacron_core.clocks import VersionVector
from novacron_core.sync.crdt import rga_wire
from novacron_core.sync.crdt.base import Atom, Crdt, atom
from novacron_core.sync.crdt.rga_chunks import (
    GAP,
    GONE,
    MASK,
    MAX,
    PIECE,
    SHIFT,
    STEP,
    Chunk,
    nth_visible,
)
from novacron_core.sync.crdt.rga_delta import Insert, RgaDelta, Stamp
from novacron_core.sync.crdt.rga_gc import Picker, purge, settled_picker
from novacron_core.sync.crdt.rga_remote import delete_id, delete_range, integrate, typed
from novacron_core.sync.crdt.rga_state import build, merge_state, runs
from novacron_core.sync.crdt.rga_wire import Id, Run

__all__ = ["GONE", "RGA", "Insert", "RgaDelta"]

_one = RgaDelta.one


class RGA(Crdt):
    KIND = 9
    COLLAPSES = True  # gc drops tombstones a replica that restarted with less may still need
    SETTLES = True  # ... and only once every insert that could name them has arrived
    __slots__ = (
        "_clock",
        "_cstart",
        "_cur",
        "_floor",
        "_head",
        "_hint",
        "_idx",
        "_len",
        "_names",
        "_pending",
        "_pending_del",
        "_rank",
        "_tail",
        "_where",
    )

    def __init__(self, replica: str = "") -> None:
        self.replica = replica
        self._head = self._tail = Chunk([], [], [])
        self._where: dict[int, Chunk] | None = None
        self._names: list[str] = []  # replica# -> name
        self._idx: dict[str, int] = {}  # name -> replica#
        self._clock = 0
        self._len = 0
        self._cur = self._head  # cursor: a chunk ...
        self._cstart = 0  # ... and the number of visible elements before it
        self._pending: dict[Id, list[Run]] = {}  # origin -> runs waiting for it
        self._pending_del: dict[Id, Stamp] = {}
        self._floor: dict[int, int] = {}  # replica# -> lamport: the GC floor
        # element -> the id it sorts by among its siblings, if not its own (re-anchored by GC)
        self._rank: dict[int, int] = {}
        # (chunk, k, j): the chunk's first j elements hold k visible ones; left by the last
        # local edit, so that typing on in a chunk holding tombstones finds its spot at once
        self._hint: tuple[Chunk, int, int] | None = None

    # ------------------------------------------------------------ ids

    def _intern(self, name: str) -> int:
        i = self._idx.get(name)
        if i is None:
            i = self._idx[name] = len(self._names)
            if i > MASK:
                raise ValueError("too many replicas edited this sequence")
            self._names.append(name)
        return i

    def _iid(self, t: Id) -> int:
        return t[0] << SHIFT | self._intern(t[1])

    def _tid(self, x: int) -> Id:
        return (x >> SHIFT, self._names[x & MASK])

    def _stamp(self, s: Stamp) -> int:
        return -1 if s is None else 0 if not s[0] else self._iid(s)

    def _tstamp(self, s: int) -> Stamp:
        return None if s < 0 else self._tid(s) if s else (0, "")

    def _index(self) -> dict[int, Chunk]:
        if self._where is None:
            self._where = {i: c for c in self._chunks() for i in c.ids}
        return self._where

    def _collected(self, t: Id) -> bool:
        """An insert the floor covers that is not here was garbage-collected here."""
        r = self._idx.get(t[1])
        return r is not None and t[0] <= self._floor.get(r, 0)

    # ------------------------------------------------------------ reading

    def _chunks(self) -> Iterator[Chunk]:
        c: Chunk | None = self._head
        while c is not None:
            yield c
            c = c.next

    def __len__(self) -> int:
        return self._len

    def value(self) -> list[Atom]:
        return [v for c in self._chunks() for v in c.vals if v is not GONE]

    def text(self) -> str:
        return "".join([v for c in self._chunks() for v in c.vals if v is not GONE])

    def items(self) -> Iterator[Insert]:
        """Every element in document order, tombstones as ``GONE``."""
        tid = self._tid
        for c in self._chunks():
            for i, o, v in zip(c.ids, c.origins, c.vals, strict=True):
                yield tid(i), None if o is None else tid(o), v

    def stats(self) -> dict[str, int]:
        """Elements kept, by kind: what GC bounds (tombstones, pending) beside the text."""
        chunks = list(self._chunks())
        kept = sum(len(c.ids) for c in chunks)
        return {
            "live": self._len,
            "tombstones": kept - self._len,
            "chunks": len(chunks),
            "pending": sum(len(r[3]) for w in self._pending.values() for r in w),
            "pending_deletes": len(self._pending_del),
        }

    def _seek(self, q: int) -> tuple[Chunk, int]:
        """(chunk, visible elements before it) of the chunk holding visible index q."""
        c, start = self._cur, self._cstart
        if q < start - q:  # nearer the head than the cursor
            c, start = self._head, 0
        elif self._len - q < abs(q - start):
            c, start = self._tail, self._len - self._tail.vis
        while q < start:
            c = c.prev  # type: ignore[assignment]
            start -= c.vis
        while q >= start + c.vis:
            start += c.vis
            c = c.next  # type: ignore[assignment]
        self._cur, self._cstart = c, start
        return c, start

    # ------------------------------------------------------------ chunks

    def _link_after(self, c: Chunk, new: list[Chunk]) -> None:
        """Link the chunks ``new`` (in order) after ``c``, labels spread over the gap."""
        nxt = c.next
        prev = c
        for x in new:
            x.prev, prev.next = prev, x
            prev = x
        prev.next = nxt
        if nxt is None:
            self._tail = prev
            for k, x in enumerate(new, 1):
                x.label = c.label + k * GAP
            return
        nxt.prev = prev
        step = (nxt.label - c.label) // (len(new) + 1)
        if step < 1:  # no labels left in between: spread them all out again
            for k, x in enumerate(self._chunks()):
                x.label = k * GAP
            return
        for k, x in enumerate(new, 1):
            x.label = c.label + k * step

    def _unlink(self, c: Chunk) -> None:
        if c.prev is None:
            if c.next is None:
                return  # (the document keeps one chunk)
            self._head = c.next
        else:
            c.prev.next = c.next
        if c.next is None:
            self._tail = c.prev  # type: ignore[assignment]
        else:
            c.next.prev = c.prev

    def _splice(
        self,
        c: Chunk,
        j: int,
        ids: list[int],
        origins: list[int | None],
        vals: list[Any],
        stamps: list[int | None],
    ) -> None:
        """Insert the elements at ``c[j]``, cutting ``c`` into several if it overflows."""
        where = self._where
        if len(c.ids) + len(ids) <= MAX:
            c.ids[j:j] = ids
            c.origins[j:j] = origins
            c.vals[j:j] = vals
            c.stamps[j:j] = stamps
            c.vis = len(c.vals) - c.vals.count(GONE)
            if where is not None:
                where.update(dict.fromkeys(ids, c))
            return
        all_ids = c.ids[:j] + ids + c.ids[j:]
        all_origins = c.origins[:j] + origins + c.origins[j:]
        all_vals = c.vals[:j] + vals + c.vals[j:]
        all_stamps = c.stamps[:j] + stamps + c.stamps[j:]
        total = len(all_ids)
        size = -(-total // -(-total // PIECE))  # near-equal pieces of at most PIECE
        c.ids, c.origins, c.vals = all_ids[:size], all_origins[:size], all_vals[:size]
        c.stamps = all_stamps[:size]
        c.vis = len(c.vals) - c.vals.count(GONE)
        if where is not None:
            where.update(dict.fromkeys(ids, c))
        new = []
        for s in range(size, total, size):
            e = s + size
            x = Chunk(all_ids[s:e], all_origins[s:e], all_vals[s:e], all_stamps[s:e])
            new.append(x)
            if where is not None:
                where.update(dict.fromkeys(x.ids, x))
        self._link_after(c, new)

    def _phys(self, c: Chunk, k: int) -> int:
        """Physical index in ``c`` (which holds tombstones) of its k-th visible element."""
        h = self._hint
        if h is None or h[0] is not c:
            return nth_visible(c.vals, k)
        _, hk, j = h
        vals = c.vals
        if k >= hk:
            while True:
                if vals[j] is not GONE:
                    if hk == k:
                        return j
                    hk += 1
                j += 1
        while True:
            j -= 1
            if vals[j] is not GONE:
                hk -= 1
                if hk == k:
                    return j

    def _before_cursor(self, c: Chunk) -> bool:
        return c is not self._cur and c.label < self._cur.label

    # ------------------------------------------------------------ local edits

    def insert(self, pos: int, items: Sequence[Atom]) -> RgaDelta:
        """Insert ``items`` (a string inserts its characters) before visible index ``pos``."""
        n = len(items)
        if n == 1 and type(items) is str and pos > 0:  # typing: one character, mostly inline
            c, start = self._cur, self._cstart
            k = pos - 1 - start
            if 0 <= k < c.vis and len(c.ids) < MAX and self.replica:
                ids = c.ids
                if c.vis == len(ids):
                    j = k
                else:  # (the hint of the last local edit, or a scan of the chunk)
                    h = self._hint
                    hit = h is not None and h[0] is c and h[1] == k + 1
                    if hit and h is not None and c.vals[h[2] - 1] is not GONE:
                        j = h[2] - 1
                    else:
                        j = self._phys(c, k)
                left = ids[j]
                j += 1
                me = self._idx.get(self.replica)
                if me is None:
                    me = self._intern(self.replica)
                base = self._clock = self._clock + 1
                nid = base << SHIFT | me
                ids.insert(j, nid)
                c.origins.insert(j, left)
                c.vals.insert(j, items)
                c.stamps.insert(j, None)
                c.vis += 1
                if self._where is not None:
                    self._where[nid] = c
                self._hint = (c, k + 2, j + 1)
                self._len += 1
                return _one(
                    (
                        self.replica,
                        base,
                        (left >> SHIFT, self._names[left & MASK]),
                        items,
                        None,
                        None,
                    )
                )
        if not 0 <= pos <= self._len:
            raise IndexError(f"insert at {pos} in a sequence of {self._len}")
        if not self.replica:
            raise ValueError("a mutating replica needs an id")
        if type(items) is not str:
            if any(v is None for v in items):
                raise ValueError("None cannot be an RGA element (it marks deleted ones)")
            items = [atom(v) for v in items]
        if not n:
            return RgaDelta()
        if pos == 0:
            c, start, j, origin = self._head, 0, 0, None
        else:
            c, start = self._seek(pos - 1)
            k = pos - 1 - start
            j = k if c.vis == len(c.ids) else self._phys(c, k)
            origin = c.ids[j]
            j += 1
        me = self._idx.get(self.replica)
        if me is None:
            me = self._intern(self.replica)
        base = self._clock + 1
        self._clock += n
        if n == 1 and len(c.ids) < MAX:
            nid = base << SHIFT | me
            c.ids.insert(j, nid)
            c.origins.insert(j, origin)
            c.vals.insert(j, items[0])
            c.stamps.insert(j, None)
            c.vis += 1
            if self._where is not None:
                self._where[nid] = c
            self._hint = (c, pos - start + 1, j + 1)
        else:
            ids = list(range(base << SHIFT | me, (base + n) << SHIFT | me, STEP))
            origins: list[int | None] = [origin]
            origins += ids[:-1]
            fits = len(c.ids) + n <= MAX
            self._splice(c, j, ids, origins, list(items), [None] * n)
            self._hint = (c, pos - start + n, j + n) if fits else None
        self._len += n
        self._cur, self._cstart = c, start
        vals = items if type(items) is str else list(items)
        first = None if origin is None else (origin >> SHIFT, self._names[origin & MASK])
        return _one((self.replica, base, first, vals, None, None))

    def delete(self, pos: int, n: int = 1) -> RgaDelta:
        """Delete ``n`` visible elements starting at visible index ``pos``."""
        if n < 0 or pos < 0 or pos + n > self._len:
            raise IndexError(f"delete {n} at {pos} in a sequence of {self._len}")
        if not self.replica:
            raise ValueError("a mutating replica needs an id")
        if not n:
            return RgaDelta()
        me = self._intern(self.replica)
        self._clock += 1
        stamp = self._clock << SHIFT | me
        c: Chunk | None
        c, start = self._seek(pos)
        k = pos - start
        left = n
        gone: list[int] = []
        while left:
            assert c is not None
            if k >= c.vis:
                c, k = c.next, 0
                continue
            vals = c.vals
            take = min(left, c.vis - k)
            if c.vis == len(vals):
                gone += c.ids[k : k + take]
                vals[k : k + take] = [GONE] * take
                c.stamps[k : k + take] = [stamp] * take
                j = k
            else:
                j = self._phys(c, k)
                ids, stamps, p, marked = c.ids, c.stamps, j, 0
                while marked < take:
                    if vals[p] is not GONE:
                        gone.append(ids[p])
                        vals[p] = GONE
                        stamps[p] = stamp
                        marked += 1
                    p += 1
            if left == n:
                self._hint = (c, k, j)  # (the deletes are all at or after j)
            c.vis -= take
            left -= take
            c, k = c.next, 0
        self._len -= n
        return RgaDelta(lazy=(self._names, gone, (self._clock, self.replica)))

    # ------------------------------------------------------------ remote edits

    def merge(self, other: Any) -> None:
        self._hint = None
        if type(other) is not RgaDelta:
            self._merge_state(other)
            return
        runs = other.runs
        if other._lazy is None and not other._dels:
            if len(runs) == 1:
                if not typed(self, runs[0]):
                    integrate(self, runs[0])
                return
            for run in runs:
                integrate(self, run)
            return
        for run in runs:
            integrate(self, run)
        for name, lam, m, s in other.del_runs():
            if m == 1:
                self._delete_id((lam, name), s)
            else:
                self._delete_range(name, lam, m, s)

    def _integrate(self, run: Run) -> None:
        integrate(self, run)  # (rga_remote.py)

    def _delete_range(self, name: str, lam: int, m: int, stamp: Stamp) -> None:
        delete_range(self, name, lam, m, stamp)

    def _delete_id(self, t: Id, stamp: Stamp) -> None:
        delete_id(self, t, stamp)

    # ------------------------------------------------------------ states

    def _runs(self) -> Iterator[Run]:
        return runs(self)  # (rga_state.py)

    def _merge_state(self, other: RGA) -> None:
        merge_state(self, other)

    def _build(self, runs: list[Run]) -> None:
        build(self, runs)

    def _waiting(self) -> list[Run]:
        def key(run: Run) -> tuple[str, int, int]:
            return run[0], run[1], len(run[3])

        return [run for o in sorted(self._pending) for run in sorted(self._pending[o], key=key)]

    def as_delta(self) -> RgaDelta:
        dels: dict[Id, Stamp] = dict(self._pending_del)
        runs = list(self._runs())
        for name, lam, _, vals, stamp, _ in runs:
            if vals[0] is None:
                dels.update(dict.fromkeys([(lam + k, name) for k in range(len(vals))], stamp))
        return RgaDelta(runs + self._waiting(), dels)

    @classmethod
    def from_delta(cls, delta: RgaDelta, replica: str = "") -> RGA:
        out = cls(replica)
        out.merge(delta)
        return out

    # ------------------------------------------------------------ garbage collection

    def gc(self, stable: VersionVector) -> None:
        """Drop the tombstones whose delete and insert ``stable`` covers (see ``rga_gc`` for
        how). ``stable``: replica -> the highest lamport (insert, or delete stamp) of that
        replica such that every replica applied all its ops up to it, and every op any replica
        made before applying those is applied here too (the module docstring says why)."""
        points: dict[int, int] = {}
        for name, lam in stable.counters.items():
            r = self._idx.get(name)
            if r is not None:
                points[r] = lam
                if lam > self._floor.get(r, 0):
                    self._floor[r] = lam
        self._purge(settled_picker(len(self._names), points))

    def _purge(self, pick: Picker) -> None:
        self._hint = None
        purge(self, pick)  # (rga_gc.py)

    # ------------------------------------------------------------ wire

    def to_wire(self) -> list[Any]:
        waiting = self._waiting()
        runs = [*self._runs(), *waiting]
        floor = sorted((self._names[r], lam) for r, lam in self._floor.items())
        return rga_wire.encode(runs, sorted(self._pending_del.items()), floor, len(waiting))

    @classmethod
    def from_wire(cls, raw: Any) -> RGA:
        runs, deletes, floor, pending = rga_wire.decode(raw)
        out = cls()
        for name, lam in floor.items():
            out._floor[out._intern(name)] = lam
        if pending is None:  # (version 1, or a delta's body: integrate one by one)
            for run in runs:
                out._integrate(run)
        else:
            out._build(runs[: len(runs) - pending])
            for run in runs[len(runs) - pending :]:
                out._integrate(run)
        for i, s in deletes:
            out._delete_id(i, s)
        return out
