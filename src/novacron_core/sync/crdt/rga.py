"""RGA: a replicated growable array (Roh et al.) for sequences and text.

Every element has a unique id ``(lamport, replica)`` and remembers its *origin*, the element
it was inserted after. A replica integrates a remote insert right after its origin, skipping
the elements with larger ids: those were inserted later at the same spot (or descend from such
an insert), so every replica orders concurrent inserts identically. Deletes leave tombstones,
needed to place concurrent inserts; they are not garbage collected (see docs/sync.md).

Local index: the document is a list of chunks (at most ``_MAX`` elements each, tombstones
included) that know their visible length, plus a cursor (chunk index, visible offset) kept at
the last edit. Editing is local, so finding a position walks a few chunks from the cursor
instead of scanning the document; finding an id goes through ``id -> chunk``.

Out-of-order deltas are fine: an insert whose origin is unknown waits in a buffer until the
origin arrives, a delete of an unknown id is remembered until the element arrives.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from novacron_core.sync.crdt.base import Atom, Crdt, atom, replica_id

Id = tuple[int, str]
Origin = Id | None
Insert = tuple[Id, Origin, Atom]

_MAX = 128  # elements per chunk before it splits in two
# Inside a replica an id is one int, ``lamport << _SHIFT | replica#`` (replica# indexes the
# replica's own name table): a third of the memory of a tuple, and cheap to hash. Ids are
# ``(lamport, replica name)`` tuples everywhere else (deltas, wire, API).
_SHIFT = 20
_MASK = (1 << _SHIFT) - 1


class _Gone:
    __slots__ = ()

    def __repr__(self) -> str:
        return "<deleted>"


GONE: Any = _Gone()  # tombstone marker in a chunk's values


class _Chunk:
    __slots__ = ("ids", "origins", "vals", "vis")

    def __init__(self, ids: list[int], origins: list[int | None], vals: list[Any]) -> None:
        self.ids = ids
        self.origins = origins
        self.vals = vals
        self.vis = len(vals) - vals.count(GONE)


def _nth_visible(vals: list[Any], k: int) -> int:
    """Physical index of the k-th (0-based) visible value of a chunk."""
    for j, v in enumerate(vals):
        if v is not GONE:
            if not k:
                return j
            k -= 1
    raise IndexError(k)


class RgaDelta(Crdt):
    """What RGA mutators return: inserted elements and deleted ids (a join of such)."""

    KIND = 10
    __slots__ = ("deletes", "inserts")

    def __init__(
        self,
        inserts: dict[Id, tuple[Origin, Atom]] | None = None,
        deletes: set[Id] | None = None,
    ) -> None:
        self.replica = ""
        self.inserts: dict[Id, tuple[Origin, Atom]] = inserts if inserts is not None else {}
        self.deletes: set[Id] = deletes if deletes is not None else set()

    def merge(self, other: Any) -> None:
        if isinstance(other, RGA):
            other = other.as_delta()
        for i, rest in other.inserts.items():
            if i not in self.inserts:
                self.inserts[i] = rest
        self.deletes |= other.deletes

    def value(self) -> Any:
        return RGA.from_delta(self).value()

    def elements(self) -> list[Insert]:
        """Every inserted element ``(id, origin, value)``, in id order."""
        return [(i, o, v) for i, (o, v) in sorted(self.inserts.items())]

    def deleted(self) -> list[Id]:
        """Every deleted id, in id order."""
        return sorted(self.deletes)

    def state_class(self) -> type[Crdt]:
        return RGA

    def to_wire(self) -> list[Any]:
        dels = self.deletes
        ins = [(i, o, None if i in dels else v) for i, (o, v) in sorted(self.inserts.items())]
        return _wire(ins, sorted(dels))

    @classmethod
    def from_wire(cls, raw: Any) -> RgaDelta:
        ins, dels = _unwire(raw)
        # a value-less element is a deleted one: never let None become visible
        return cls({i: (o, v) for i, o, v in ins}, set(dels) | {i for i, _, v in ins if v is None})


class RGA(Crdt):
    KIND = 9
    COLLAPSES = True  # gc drops tombstones a replica that restarted with less may still need
    __slots__ = (
        "_chunks",
        "_clock",
        "_cstart",
        "_cur",
        "_idx",
        "_len",
        "_names",
        "_pending",
        "_pending_del",
        "_where",
    )

    def __init__(self, replica: str = "") -> None:
        self.replica = replica
        self._chunks: list[_Chunk] = [_Chunk([], [], [])]
        # id -> chunk, built on the first remote edit: a replica that only edits locally
        # (and ships deltas) never needs it, which halves its memory and speeds it up
        self._where: dict[int, _Chunk] | None = None
        self._names: list[str] = []  # replica# -> name
        self._idx: dict[str, int] = {}  # name -> replica#
        self._clock = 0
        self._len = 0
        self._cur = 0  # cursor: chunk index ...
        self._cstart = 0  # ... and the number of visible elements before it
        self._pending: dict[Id, list[Insert]] = {}  # origin -> inserts waiting for it
        self._pending_del: set[Id] = set()

    # ------------------------------------------------------------ ids

    def _intern(self, name: str) -> int:
        i = self._idx.get(name)
        if i is None:
            i = self._idx[name] = len(self._names)
            if i > _MASK:
                raise ValueError("too many replicas edited this sequence")
            self._names.append(name)
        return i

    def _iid(self, t: Id) -> int:
        return t[0] << _SHIFT | self._intern(t[1])

    def _tid(self, x: int) -> Id:
        return (x >> _SHIFT, self._names[x & _MASK])

    def _has(self, t: Id) -> bool:
        i = self._idx.get(t[1])
        return i is not None and (t[0] << _SHIFT | i) in self._index()

    # ------------------------------------------------------------ reading

    def __len__(self) -> int:
        return self._len

    def value(self) -> list[Atom]:
        return [v for c in self._chunks for v in c.vals if v is not GONE]

    def text(self) -> str:
        return "".join([v for c in self._chunks for v in c.vals if v is not GONE])

    def _seek(self, q: int) -> tuple[int, int]:
        """(chunk index, visible elements before it) of the chunk holding visible index q."""
        chunks = self._chunks
        ci, start = self._cur, self._cstart
        while q < start:
            ci -= 1
            start -= chunks[ci].vis
        while q >= start + chunks[ci].vis:
            start += chunks[ci].vis
            ci += 1
        self._cur, self._cstart = ci, start
        return ci, start

    # ------------------------------------------------------------ local edits

    def insert(self, pos: int, items: Sequence[Atom]) -> RgaDelta:
        """Insert ``items`` (a string inserts its characters) before visible index ``pos``."""
        n = len(items)
        if not 0 <= pos <= self._len:
            raise IndexError(f"insert at {pos} in a sequence of {self._len}")
        if not self.replica:
            raise ValueError("a mutating replica needs an id")
        if type(items) is not str and None in items:
            raise ValueError("None cannot be an RGA element (it marks tombstones on the wire)")
        if pos == 0:
            ci, chunk, j, origin = 0, self._chunks[0], 0, None
            if self._cur > 0:
                self._cstart += n
        else:
            ci, start = self._seek(pos - 1)
            chunk = self._chunks[ci]
            k = pos - 1 - start
            j = k if chunk.vis == len(chunk.vals) else _nth_visible(chunk.vals, k)
            origin = chunk.ids[j]
            j += 1
        clock, name, where = self._clock, self.replica, self._where
        me = self._idx.get(name)
        if me is None:
            me = self._intern(name)
        tid_origin = None if origin is None else self._tid(origin)
        if n == 1:
            val = items[0]
            nid = (clock + 1) << _SHIFT | me
            chunk.ids.insert(j, nid)
            chunk.origins.insert(j, origin)
            chunk.vals.insert(j, val)
            if where is not None:
                where[nid] = chunk
            delta: dict[Id, tuple[Origin, Atom]] = {(clock + 1, name): (tid_origin, val)}
        else:
            ids = [(clock + i) << _SHIFT | me for i in range(1, n + 1)]
            vals = list(items)
            chunk.ids[j:j] = ids
            chunk.origins[j:j] = [origin, *ids[:-1]]
            chunk.vals[j:j] = vals
            if where is not None:
                for i in ids:
                    where[i] = chunk
            tids = [(clock + i, name) for i in range(1, n + 1)]
            origins: list[Origin] = [tid_origin, *tids[:-1]]
            delta = dict(zip(tids, zip(origins, vals, strict=True), strict=True))
        self._clock = clock + n
        chunk.vis += n
        self._len += n
        if len(chunk.ids) > _MAX:
            self._split(ci)
        return RgaDelta(delta)

    def delete(self, pos: int, n: int = 1) -> RgaDelta:
        """Delete ``n`` visible elements starting at visible index ``pos``."""
        if n < 0 or pos < 0 or pos + n > self._len:
            raise IndexError(f"delete {n} at {pos} in a sequence of {self._len}")
        gone: set[Id] = set()
        for _ in range(n):
            ci, start = self._seek(pos)
            chunk = self._chunks[ci]
            k = pos - start
            vals = chunk.vals
            j = k if chunk.vis == len(vals) else _nth_visible(vals, k)
            vals[j] = GONE
            chunk.vis -= 1
            gone.add(self._tid(chunk.ids[j]))
        self._len -= n
        return RgaDelta(None, gone)

    def _split(self, ci: int) -> None:
        chunk = self._chunks[ci]
        half = len(chunk.ids) // 2
        new = _Chunk(chunk.ids[half:], chunk.origins[half:], chunk.vals[half:])
        del chunk.ids[half:], chunk.origins[half:], chunk.vals[half:]
        chunk.vis -= new.vis
        where = self._where
        if where is not None:
            for i in new.ids:
                where[i] = new
        self._chunks.insert(ci + 1, new)
        if self._cur > ci:
            self._cur += 1

    # ------------------------------------------------------------ remote edits

    def merge(self, other: Any) -> None:
        if isinstance(other, RGA):
            other = other.as_delta()
        for i, (origin, val) in other.inserts.items():
            if not self._has(i):
                self._integrate(i, origin, val)
        for i in other.deletes:
            self._delete_id(i)

    def _index(self) -> dict[int, _Chunk]:
        if self._where is None:
            self._where = {i: c for c in self._chunks for i in c.ids}
        return self._where

    def _integrate(self, nid: Id, origin: Origin, val: Atom) -> None:
        if origin is not None and not self._has(origin):
            waiting = self._pending.setdefault(origin, [])
            if all(w[0] != nid for w in waiting):
                waiting.append((nid, origin, val))
            return
        # a loop, not recursion: a long run delivered backwards releases a long chain
        todo = [(nid, origin, val)]
        while todo:
            item = todo.pop()
            if not self._has(item[0]):
                self._place(*item)
                todo.extend(self._pending.pop(item[0], ()))

    def _place(self, tnid: Id, torigin: Origin, val: Atom) -> None:
        where, chunks, names = self._index(), self._chunks, self._names
        nid = self._iid(tnid)
        origin = None if torigin is None else self._iid(torigin)
        lam, name = tnid

        def later(x: int) -> bool:  # orders after the new element: (lamport, name) greater
            xl = x >> _SHIFT
            return xl > lam or (xl == lam and names[x & _MASK] > name)

        if origin is None:
            ci, chunk, j = 0, chunks[0], 0
        else:
            chunk = where[origin]
            ci = chunks.index(chunk)
            j = chunk.ids.index(origin) + 1
        while True:  # skip later inserts at the same spot (and their descendants)
            ids = chunk.ids
            while j < len(ids) and later(ids[j]):
                j += 1
            if j < len(ids) or ci + 1 == len(chunks) or not later(chunks[ci + 1].ids[0]):
                break
            ci, chunk, j = ci + 1, chunks[ci + 1], 0
        if tnid in self._pending_del:
            self._pending_del.discard(tnid)
            val = GONE
        chunk.ids.insert(j, nid)
        chunk.origins.insert(j, origin)
        chunk.vals.insert(j, val)
        where[nid] = chunk
        if val is not GONE:
            chunk.vis += 1
            self._len += 1
            if ci < self._cur:
                self._cstart += 1
        if lam > self._clock:
            self._clock = lam
        if len(chunk.ids) > _MAX:
            self._split(ci)

    def _delete_id(self, t: Id) -> None:
        k = self._idx.get(t[1])
        x = -1 if k is None else t[0] << _SHIFT | k
        chunk = self._index().get(x)
        if chunk is None:
            self._pending_del.add(t)
            return
        j = chunk.ids.index(x)
        if chunk.vals[j] is GONE:
            return
        chunk.vals[j] = GONE
        chunk.vis -= 1
        self._len -= 1
        if self._chunks.index(chunk) < self._cur:
            self._cstart -= 1

    # ------------------------------------------------------------ state as data

    def items(self) -> Iterator[Insert]:
        """Every element in document order, tombstones as ``GONE``."""
        tid = self._tid
        for c in self._chunks:
            for i, o, v in zip(c.ids, c.origins, c.vals, strict=True):
                yield tid(i), None if o is None else tid(o), v

    def as_delta(self) -> RgaDelta:
        ins: dict[Id, tuple[Origin, Atom]] = {}
        dels = set(self._pending_del)
        for i, o, v in self.items():
            ins[i] = (o, None if v is GONE else v)
            if v is GONE:
                dels.add(i)
        for waiting in self._pending.values():
            for i, o, v in waiting:
                ins[i] = (o, v)
        return RgaDelta(ins, dels)

    @classmethod
    def from_delta(cls, delta: RgaDelta, replica: str = "") -> RGA:
        out = cls(replica)
        out.merge(delta)
        return out

    def to_wire(self) -> list[Any]:
        ins = [(i, o, None if v is GONE else v) for i, o, v in self.items()]
        for origin in sorted(self._pending):
            ins.extend(sorted(self._pending[origin]))
        return _wire(ins, sorted(self._pending_del))

    @classmethod
    def from_wire(cls, raw: Any) -> RGA:
        ins, dels = _unwire(raw)
        out = cls()
        out.merge(RgaDelta({i: (o, v) for i, o, v in ins}, set(dels)))
        for i, _, v in ins:
            if v is None:  # a tombstone on the wire
                out._delete_id(i)
        return out


# ---------------------------------------------------------------- wire format
# [replicas, [lamport, replica#, origin lamport (0 = head), origin replica#] * n, values, dels]
# Values of tombstones are dropped (None). Replica names are listed once.


def _wire(ins: Iterable[Insert], dels: list[Id]) -> list[Any]:
    names: dict[str, int] = {}
    flat: list[int] = []
    vals: list[Any] = []
    for (lam, r), origin, v in ins:
        ri = names.setdefault(r, len(names))
        if origin is None:
            flat += (lam, ri, 0, 0)
        else:
            flat += (lam, ri, origin[0], names.setdefault(origin[1], len(names)))
        vals.append(v)
    flat_dels: list[int] = []
    for lam, r in dels:
        flat_dels += (lam, names.setdefault(r, len(names)))
    return [list(names), flat, vals, flat_dels]


def _unwire(raw: Any) -> tuple[list[Insert], list[Id]]:
    if not isinstance(raw, list) or len(raw) != 4 or not all(isinstance(x, list) for x in raw):
        raise TypeError("an RGA is [replicas, ids, values, deletes]")
    names = [replica_id(r) for r in raw[0]]
    flat, vals, flat_dels = raw[1], raw[2], raw[3]
    if len(flat) != 4 * len(vals) or len(flat_dels) % 2:
        raise ValueError("RGA columns disagree in length")
    if not all(type(x) is int and x >= 0 for x in flat + flat_dels):
        raise ValueError("RGA ids are non-negative integers")
    ins: list[Insert] = []
    for n, v in enumerate(vals):
        lam, ri, olam, ori = flat[4 * n : 4 * n + 4]
        if lam == 0:
            raise ValueError("lamport clocks start at 1")
        ins.append(((lam, names[ri]), None if olam == 0 else (olam, names[ori]), atom(v)))
    dels = [(flat_dels[k], names[flat_dels[k + 1]]) for k in range(0, len(flat_dels), 2)]
    return ins, dels
