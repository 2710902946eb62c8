"""RGA garbage collection: removing tombstones without changing what the document reads.

See ``RGA.gc`` for when a tombstone may go; this is how: document order backwards, so an
element's children are counted before it is reached (an element's first child is the next
element in document order). One without remaining children goes. One with a single child goes
too, the child taking its place: the removed element's origin, and its *rank* (the id it sorts
by among its siblings), so that the child does not jump ahead of siblings the removed element
came after. The document reads the same, and so does every insert that can still arrive: the
GC point guarantees they are all newer than anything removed, and the skip rule compares ranks.
One with several children stays (rare: concurrent inserts at one spot, or typing twice at one
spot with the first stretch deleted).

Work is per chunk where it can be: which elements of a chunk are candidates is decided from
the chunk's distinct delete stamps; a chunk of candidates only (a block delete) goes at once;
children are counted with Counter's C loop over whole chunks of survivors.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Literal

from novacron_core.sync.crdt.rga_chunks import GONE, MASK, PIECE, SHIFT, Chunk

if TYPE_CHECKING:
    from novacron_core.sync.crdt.rga import RGA

try:  # the C loop behind Counter.update, for a plain dict
    from collections import _count_elements as _count  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover

    def _count(counts: dict[int | None, int], items: Iterable[int | None]) -> None:
        for x in items:
            counts[x] = counts.get(x, 0) + 1


# what a picker says of a chunk: no candidates, all of them, or the indices of those that are
Picked = Literal[True] | list[int] | None
Picker = Callable[[Chunk], Picked]


def settled_picker(names: int, points: dict[int, int]) -> Picker:
    """Tombstones whose delete stamp and insert ``points`` (replica# -> lamport) cover."""
    known = [points.get(r, 0) for r in range(names)]
    low = min(known, default=0)
    verdict: dict[int, bool] = {}  # stamp -> its delete is covered

    def pick(c: Chunk) -> Picked:
        if c.vis == len(c.ids):
            return None
        stamps = set(c.stamps)
        stamps.discard(None)
        good: set[int | None] = set()
        for st in stamps:
            assert st is not None
            ok = verdict.get(st)
            if ok is None:
                ok = verdict[st] = st >= 0 and (not st or st >> SHIFT <= known[st & MASK])
            if ok:
                good.add(st)
        if not good:
            return None
        ids = c.ids
        if not c.vis and len(good) == len(stamps) and max(ids) >> SHIFT <= low:
            return True  # (a chunk of collectable tombstones only)
        out = [
            j
            for j, (x, st) in enumerate(zip(ids, c.stamps, strict=True))
            if st in good and x >> SHIFT <= known[x & MASK]
        ]
        return out or None

    return pick


def purge(doc: RGA, pick: Picker) -> None:
    """Remove what ``pick`` picks and the rules above let go. A visible pick (a peer collected
    it, so it is deleted everywhere) becomes a tombstone first."""
    where, rank = doc._where, doc._rank
    kids: dict[int | None, int] = {}  # element -> children after it still there
    nxt: tuple[Chunk, int] | None = None  # the next element still there
    length, removed = doc._len, 0
    c: Chunk | None = doc._tail
    while c is not None:
        prev = c.prev
        ids, origins, vals, stamps = c.ids, c.origins, c.vals, c.stamps
        picked = pick(c) if ids else None
        if not picked:
            _count(kids, origins)
            if ids:
                nxt = (c, 0)
            c = prev
            continue
        if picked is True and _goes_whole(c, kids, nxt, rank):
            removed += len(ids)
            doc._len -= c.vis
            for x in rank.keys() & ids:
                del rank[x]
            if where is not None:
                for x in ids:
                    del where[x]
            c.ids, c.origins, c.vals, c.stamps, c.vis = [], [], [], [], 0
            doc._unlink(c)
            c = prev
            continue
        every = picked is True
        chosen = set() if picked is True else set(picked)
        drop: list[int] = []
        for j in range(len(ids) - 1, -1, -1):
            x, o = ids[j], origins[j]
            if every or j in chosen:
                if vals[j] is not GONE:
                    vals[j] = GONE
                    stamps[j] = 0
                    c.vis -= 1
                    doc._len -= 1
                k = kids.pop(x, 0)
                if k == 0:  # nothing names it any more: it goes
                    drop.append(j)
                    continue
                if k == 1:  # the next element is its only child: it takes x's place
                    assert nxt is not None
                    nc, nj = nxt
                    nc.origins[nj] = o
                    rank[nc.ids[nj]] = rank.get(x, x)
                    drop.append(j)
                    kids[o] = kids.get(o, 0) + 1
                    continue
            kids[o] = kids.get(o, 0) + 1
            nxt = (c, j)
        if drop:
            removed += len(drop)
            for j in drop:
                x = ids[j]
                rank.pop(x, None)
                if where is not None:
                    del where[x]
            dropped = set(drop)
            keep = [j for j in range(len(ids)) if j not in dropped]
            c.ids = [ids[j] for j in keep]
            c.origins = [origins[j] for j in keep]
            c.vals = [vals[j] for j in keep]
            c.stamps = [stamps[j] for j in keep]
            if c.ids:
                nxt = (c, 0)
            else:
                doc._unlink(c)
        c = prev
    if removed:
        compact(doc)
    elif doc._len != length:
        doc._cur, doc._cstart = doc._head, 0


def _goes_whole(
    c: Chunk,
    kids: dict[int | None, int],
    nxt: tuple[Chunk, int] | None,
    rank: dict[int, int],
) -> bool:
    """A chunk of candidates only goes at once if none of them has a child after it (each
    one's children, if any, are in the chunk and go first), or if it is one chain (each
    element inserted after the one before) whose last element's only child is the next
    element: that child takes the chain's place (the first element's origin and rank)."""
    ids = c.ids
    inner = kids.keys() & ids
    if not inner:
        return True
    last = ids[-1]
    if inner != {last} or kids[last] != 1 or c.origins[1:] != ids[:-1] or nxt is None:
        return False
    del kids[last]
    nc, nj = nxt
    o = c.origins[0]
    nc.origins[nj] = o
    rank[nc.ids[nj]] = rank.get(ids[0], ids[0])
    kids[o] = kids.get(o, 0) + 1
    return True


def compact(doc: RGA) -> None:
    """Join neighbouring chunks that fit in one, and start the cursor over."""
    c = doc._head
    while c.next is not None:
        nxt = c.next
        if len(c.ids) + len(nxt.ids) <= PIECE:
            c.ids += nxt.ids
            c.origins += nxt.origins
            c.vals += nxt.vals
            c.stamps += nxt.stamps
            c.vis += nxt.vis
            if doc._where is not None:
                doc._where.update(dict.fromkeys(nxt.ids, c))
            doc._unlink(nxt)
        else:
            c = nxt
    doc._cur, doc._cstart = doc._head, 0
