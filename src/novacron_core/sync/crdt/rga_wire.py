"""The RGA's wire format: runs of elements, and the format before it (still decoded).

A *run* is a stretch of elements one replica inserted in one go: consecutive Lamport values,
each element's origin the one before it (so only the first origin is written), values as one
string when every element is a one-character string. Deleted elements carry no value; each
delete carries its *stamp* (the deleting replica's Lamport value, see ``rga.py``).

Version 2 bodies (``RgaDelta`` has no ``pending``; an ``RGA`` lists its document first, in
document order, then the inserts waiting for their origin)::

    [names, runs, values, deletes, floor]            RgaDelta
    [names, runs, values, deletes, floor, pending]   RGA

* ``names``: replica names, referred to by index below;
* ``runs``: 9 integers per run: replica#, lamport, length, origin lamport (0: the head),
  origin replica#, deleter# + 1, stamp lamport (deleter# + 1 = 0: live or stamp unknown if
  the lamport is 0, known to be collectable if it is 1), rank lamport (0: the first
  element's own id), rank replica# (the id a re-anchored element sorts by, see ``RGA.gc``);
* ``values``: per run a string (one element per character), a list of atoms, or nil when
  every element of the run is deleted (then its stamp is in ``runs``);
* ``deletes``: 4 integers per delete not written as a deleted run: replica#, lamport,
  deleter# + 1 (0: unknown), stamp lamport;
* ``floor``: pairs replica#, lamport: the GC floor (``RGA.gc``);
* ``pending``: how many of the runs, at the end, wait for their origin.

Version 1 (before runs and stamps) was ``[names, ids, values, deletes]`` with 4 integers per
element (lamport, replica#, origin lamport, origin replica#), nil values for deleted
elements and 2 integers per other delete; it decodes into the same data, with unknown
stamps (such tombstones are never collected).
"""

from __future__ import annotations

from typing import Any

from novacron_core.sync.crdt.base import atom, replica_id

Id = tuple[int, str]  # (lamport, replica name)
Origin = Id | None
# (replica, lamport of the first element, origin of the first, values, stamp if deleted, the
# id the first element sorts by among its siblings if not its own)
# values: a str, or a list whose None entries are deleted elements (value unknown)
Run = tuple[str, int, Origin, Any, Id | None, Id | None]

MAX_ELEMENTS = 1 << 24  # a decoded value may not claim more elements than this


class _Names:
    __slots__ = ("index", "names")

    def __init__(self) -> None:
        self.names: list[str] = []
        self.index: dict[str, int] = {}

    def __call__(self, name: str) -> int:
        i = self.index.get(name)
        if i is None:
            i = self.index[name] = len(self.names)
            self.names.append(name)
        return i


def encode(
    runs: list[Run],
    deletes: list[tuple[Id, Id | None]],
    floor: list[tuple[str, int]],
    pending: int | None,
) -> list[Any]:
    """``pending`` is None for an ``RgaDelta``, else how many runs at the end wait."""
    name = _Names()
    flat: list[int] = []
    values: list[Any] = []
    for r, lam, origin, vals, stamp, rank in runs:
        n = len(vals)
        ri = name(r)
        o_lam, o_ri = (0, 0) if origin is None else (origin[0], name(origin[1]))
        s_ri, s_lam = _stamp_out(stamp, name)
        k_lam, k_ri = (0, 0) if rank is None else (rank[0], name(rank[1]))
        flat += (ri, lam, n, o_lam, o_ri, s_ri, s_lam, k_lam, k_ri)
        if type(vals) is str:
            values.append(vals)
        elif all(v is None for v in vals):
            values.append(None)
        elif all(type(v) is str and len(v) == 1 for v in vals):
            values.append("".join(vals))
        else:
            values.append(list(vals))
    dels: list[int] = []
    for (lam, r), stamp in deletes:
        ri = name(r)
        s_ri, s_lam = _stamp_out(stamp, name)
        dels += (ri, lam, s_ri, s_lam)
    fl: list[int] = []
    for r, lam in floor:
        fl += (name(r), lam)
    out: list[Any] = [name.names, flat, values, dels, fl]
    if pending is not None:
        out.append(pending)
    return out


def _stamp_out(stamp: Id | None, name: _Names) -> tuple[int, int]:
    if stamp is None:
        return 0, 0  # unknown
    if not stamp[0]:
        return 0, 1  # known to be collectable (a peer collected it)
    return name(stamp[1]) + 1, stamp[0]


def _check_order(name: str, lam: int, origin: Id | None, rank: Id | None) -> None:
    """What every honest replica's elements satisfy and the skip rule relies on: an element
    orders after its origin (a Lamport clock), and a rank (the id of a collected element whose
    place it took) lies between the origin and the element."""
    if origin is not None and origin[0] >= lam:
        raise ValueError("an RGA element does not order after its origin")
    if rank is not None and not (rank < (lam, name) and (origin is None or rank > origin)):
        raise ValueError("an RGA rank does not lie between the origin and the element")


Decoded = tuple[list[Run], list[tuple[Id, Id | None]], dict[str, int], int | None]


def decode(raw: Any) -> Decoded:
    """Body -> (runs, deletes, floor, pending count or None). Raises ValueError/TypeError."""
    if not isinstance(raw, list) or len(raw) not in (4, 5, 6):
        raise TypeError("an RGA is [names, runs, values, deletes, floor(, pending)]")
    if len(raw) == 4:
        return _decode_v1(raw)
    if not all(isinstance(x, list) for x in raw[:5]):
        raise TypeError("RGA columns are arrays")
    names = [replica_id(r) for r in raw[0]]
    flat, values, dels, fl = raw[1], raw[2], raw[3], raw[4]
    if len(flat) != 9 * len(values) or len(dels) % 4 or len(fl) % 2:
        raise ValueError("RGA columns disagree in length")
    if not all(type(x) is int and x >= 0 for x in flat + dels + fl):
        raise ValueError("RGA ids are non-negative integers")

    def name(i: int) -> str:
        if i >= len(names):
            raise ValueError("RGA replica index out of range")
        return names[i]

    def stamp(si: int, lam: int) -> Id | None:
        if not si:
            return (0, "") if lam else None
        if not lam:
            raise ValueError("lamport clocks start at 1")
        return (lam, name(si - 1))

    runs: list[Run] = []
    total = 0
    for k, vals in enumerate(values):
        ri, lam, n, o_lam, o_ri, s_ri, s_lam, k_lam, k_ri = flat[9 * k : 9 * k + 9]
        if not lam or not n:
            raise ValueError("RGA runs start at lamport 1 and hold one element or more")
        total += n
        if total > MAX_ELEMENTS:
            raise ValueError("too many RGA elements")
        if vals is None:
            vals = [None] * n
        elif type(vals) is str:
            if len(vals) != n:
                raise ValueError("an RGA run's text disagrees with its length")
        elif isinstance(vals, list):
            if len(vals) != n:
                raise ValueError("an RGA run's values disagree with its length")
            vals = [None if v is None else atom(v) for v in vals]
        else:
            raise TypeError("RGA run values are a string, an array or nil")
        origin = None if o_lam == 0 else (o_lam, name(o_ri))
        rank = None if k_lam == 0 else (k_lam, name(k_ri))
        _check_order(name(ri), lam, origin, rank)
        runs.append((name(ri), lam, origin, vals, stamp(s_ri, s_lam), rank))
    deletes: list[tuple[Id, Id | None]] = []
    for k in range(0, len(dels), 4):
        ri, lam, s_ri, s_lam = dels[k : k + 4]
        if not lam:
            raise ValueError("lamport clocks start at 1")
        deletes.append(((lam, name(ri)), stamp(s_ri, s_lam)))
    floor = {name(fl[k]): fl[k + 1] for k in range(0, len(fl), 2)}
    pending: int | None = None
    if len(raw) == 6:
        pending = raw[5]
        if type(pending) is not int or not 0 <= pending <= len(runs):
            raise ValueError("RGA pending count out of range")
    return runs, deletes, floor, pending


def _decode_v1(raw: list[Any]) -> Decoded:
    if not all(isinstance(x, list) for x in raw):
        raise TypeError("an RGA is [replicas, ids, values, deletes]")
    names = [replica_id(r) for r in raw[0]]
    flat, vals, flat_dels = raw[1], raw[2], raw[3]
    if len(flat) != 4 * len(vals) or len(flat_dels) % 2:
        raise ValueError("RGA columns disagree in length")
    if not all(type(x) is int and x >= 0 for x in flat + flat_dels):
        raise ValueError("RGA ids are non-negative integers")
    if len(vals) > MAX_ELEMENTS:
        raise ValueError("too many RGA elements")
    runs: list[Run] = []
    for n, v in enumerate(vals):
        lam, ri, olam, ori = flat[4 * n : 4 * n + 4]
        if lam == 0:
            raise ValueError("lamport clocks start at 1")
        origin = None if olam == 0 else (olam, names[ori])
        _check_order(names[ri], lam, origin, None)
        runs.append((names[ri], lam, origin, [None if v is None else atom(v)], None, None))
    deletes: list[tuple[Id, Id | None]] = [
        ((flat_dels[k], names[flat_dels[k + 1]]), None) for k in range(0, len(flat_dels), 2)
    ]
    return runs, deletes, {}, None
