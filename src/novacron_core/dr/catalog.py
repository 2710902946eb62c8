"""What a backup target holds, and what can be restored from it (sans-IO: no target, no clock).

A target keeps three kinds of objects for one group, each beside a small JSON description
(:class:`ObjectMeta`, the ``.meta.json`` sidecar) that says what it covers without opening it:

* ``full``: the group's whole state at a committed index;
* ``incr``: what changed in the state between its ``parent`` (a full or another incr) and its
  index, so a chain full -> incr -> incr restores the state at the last one;
* ``log``: committed log entries ``first..last``, shipped continuously, so every index
  between two bases can be restored too (point in time).

A *base* is the state at one index, recreated from a full and the incrementals chained to it.
Index ``i`` is restorable when some complete base sits at ``b <= i`` and log chunks cover
``b+1..i`` without a gap. A point in time ``t`` means the newest index that was shipped (in a
base or a log chunk) at or before ``t``: the granularity is how often the log is shipped.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

FULL, INCR, LOG = "full", "incr", "log"
KINDS = (FULL, INCR, LOG)
META_SUFFIX = ".meta.json"


class NotRestorable(ValueError):
    """No chain of backups reaches the requested point (the message says what is missing)."""


@dataclass(frozen=True, slots=True)
class ObjectMeta:
    """One stored object. ``first``/``last``: the log indexes it covers (a base: both are its
    index); ``parent``: an incr's base index; ``shipped_at``: the backup agent's clock (unix
    seconds) when it was written; ``sha256``: of the stored bytes (after encryption)."""

    key: str
    kind: str
    first: int
    last: int
    term: int
    shipped_at: float
    sha256: str
    size: int
    encrypted: bool
    parent: int = 0
    root: str = ""  # a base's Merkle root over its state (checked after a restore)

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> ObjectMeta:
        raw = json.loads(data)
        if not isinstance(raw, dict) or raw.get("kind") not in KINDS:
            raise ValueError(f"not a backup object description: {data[:80]!r}")
        return cls(**{k: raw[k] for k in cls.__dataclass_fields__ if k in raw})


def object_key(group: str, kind: str, first: int, last: int, parent: int = 0) -> str:
    """Names sort by index, so a listing reads in log order."""
    if kind == LOG:
        return f"{group}/log/{first:020d}-{last:020d}.bin"
    if kind == INCR:
        return f"{group}/incr/{last:020d}-from-{parent:020d}.bin"
    return f"{group}/full/{last:020d}.bin"


def bases(objects: list[ObjectMeta]) -> dict[int, list[ObjectMeta]]:
    """Every index a complete base exists at, with the chain that recreates it (full first)."""
    fulls = {o.last: o for o in objects if o.kind == FULL}
    incrs = sorted((o for o in objects if o.kind == INCR), key=lambda o: o.last)
    chains: dict[int, list[ObjectMeta]] = {i: [o] for i, o in fulls.items()}
    for o in incrs:
        parent = chains.get(o.parent)
        if parent is not None and o.last > o.parent and o.last not in chains:
            chains[o.last] = [*parent, o]
    return chains


@dataclass(frozen=True, slots=True)
class RestorePlan:
    index: int
    base: list[ObjectMeta]  # full, then incrementals, in order
    logs: list[ObjectMeta]  # log chunks covering base+1..index, in order

    @property
    def objects(self) -> list[ObjectMeta]:
        return [*self.base, *self.logs]


def _log_run(logs: list[ObjectMeta], start: int) -> tuple[int, list[ObjectMeta]]:
    """The furthest index reachable from ``start`` through contiguous chunks, and them."""
    reach, used = start, []
    for o in sorted(logs, key=lambda o: (o.first, -o.last)):
        if o.first > reach + 1:
            break
        if o.last > reach:
            used.append(o)
            reach = o.last
    return reach, used


def plan(objects: list[ObjectMeta], index: int | None = None) -> RestorePlan:
    """The objects that restore ``index`` (None: the newest restorable point), fewest log
    entries first: the newest base at or before it, then the chunks after that base."""
    chains = bases(objects)
    if not chains:
        raise NotRestorable("no full backup in the target: take one (novacron backup create)")
    logs = [o for o in objects if o.kind == LOG]
    target = index if index is not None else window(objects)[1]
    for b in sorted((i for i in chains if i <= target), reverse=True):
        reach, run = _log_run([o for o in logs if o.last > b], b)
        if reach >= target:
            return RestorePlan(target, chains[b], [o for o in run if o.first <= target])
    first, last = window(objects)
    raise NotRestorable(
        f"index {target} is not restorable: the target covers {first}..{last} "
        "(a gap in the shipped log, or before the oldest full backup)"
    )


def window(objects: list[ObjectMeta]) -> tuple[int, int]:
    """The recoverability window: the first and last restorable index (every index between
    them is restorable unless the shipped log has gaps; :func:`plan` says)."""
    chains = bases(objects)
    if not chains:
        return (0, 0)
    logs = [o for o in objects if o.kind == LOG]
    last = max(_log_run([o for o in logs if o.last > b], b)[0] for b in chains)
    return (min(chains), last)


def index_at(objects: list[ObjectMeta], when: float) -> int:
    """The newest restorable index known to the target at time ``when`` (what had been
    shipped by then)."""
    shipped = [o for o in objects if o.shipped_at <= when]
    _, last = window(shipped)
    if last == 0:
        raise NotRestorable(f"nothing restorable had been shipped by {when}")
    return last


def due(objects: list[ObjectMeta], now: float, full_every: float, incr_every: float) -> str:
    """What a backup schedule takes next: a full when none is younger than ``full_every``, an
    incremental when no base is younger than ``incr_every``, else the log."""
    fulls = [o.shipped_at for o in objects if o.kind == FULL]
    if not fulls or now - max(fulls) >= full_every:
        return FULL
    based = max(o.shipped_at for o in objects if o.kind in (FULL, INCR))
    return INCR if now - based >= incr_every else LOG
