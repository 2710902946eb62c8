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
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from novacron_core.sync.crdt.rga_chunks import GONE, PIECE, Chunk

if TYPE_CHECKING:
    from novacron_core.sync.crdt.rga import RGA


def purge(doc: RGA, pred: Callable[[int], bool], live_too: bool = False) -> None:
    """Remove the tombstones ``pred`` picks, keeping the order of the rest.

    Document order backwards, so an element's children are counted before it is reached.
    One without remaining children goes. One with a single child goes too, the child
    taking its place: the removed element's origin, and its rank (the id it sorts by
    among its siblings, so the child does not jump ahead of siblings the removed element
    came after): the document reads the same, and so does every insert that can still
    arrive (the GC point guarantees those are newer than anything removed). One with
    several children stays (rare: concurrent inserts, or typing twice at one spot).
    ``live_too``: also visible elements (a peer collected them: deleted everywhere)."""
    where, dstamp, rank = doc._where, doc._dstamp, doc._rank
    cand: set[int] = set()
    for chunk in doc._chunks():
        if live_too or chunk.vis < len(chunk.ids):
            for x, v in zip(chunk.ids, chunk.vals, strict=True):
                if (live_too or v is GONE) and pred(x):
                    cand.add(x)
    if not cand:
        return
    kids: dict[int, int] = {}  # candidate -> children still there (counted so far)
    nxt: tuple[Chunk, int] | None = None  # the next element still there
    length, removed = doc._len, 0
    c: Chunk | None = doc._tail
    while c is not None:
        prev = c.prev
        ids, origins, vals = c.ids, c.origins, c.vals
        if cand.isdisjoint(ids):
            if not cand.isdisjoint(origins):
                for o in origins:
                    if o in cand:
                        kids[o] = kids.get(o, 0) + 1
            if ids:
                nxt = (c, 0)
            c = prev
            continue
        drop: list[int] = []
        for j in range(len(ids) - 1, -1, -1):
            x, o = ids[j], origins[j]
            if x in cand:
                if vals[j] is not GONE:
                    vals[j] = GONE
                    c.vis -= 1
                    doc._len -= 1
                    dstamp[x] = 0
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
                    if o in cand:
                        kids[o] = kids.get(o, 0) + 1
                    continue
            if o in cand:
                kids[o] = kids.get(o, 0) + 1
            nxt = (c, j)
        if drop:
            removed += len(drop)
            for j in drop:
                x = ids[j]
                dstamp.pop(x, None)
                rank.pop(x, None)
                if where is not None:
                    del where[x]
            dropped = set(drop)
            keep = [j for j in range(len(ids)) if j not in dropped]
            c.ids = [ids[j] for j in keep]
            c.origins = [origins[j] for j in keep]
            c.vals = [vals[j] for j in keep]
            if c.ids:
                nxt = (c, 0)
            else:
                doc._unlink(c)
        c = prev
    if removed:
        compact(doc)
    elif doc._len != length:
        doc._cur, doc._cstart = doc._head, 0


def compact(doc: RGA) -> None:
    """Join neighbouring chunks that fit in one, and start the cursor over."""
    c = doc._head
    while c.next is not None:
        nxt = c.next
        if len(c.ids) + len(nxt.ids) <= PIECE:
            c.ids += nxt.ids
            c.origins += nxt.origins
            c.vals += nxt.vals
            c.vis += nxt.vis
            if doc._where is not None:
                doc._where.update(dict.fromkeys(nxt.ids, c))
            doc._unlink(nxt)
        else:
            c = nxt
    doc._cur, doc._cstart = doc._head, 0
