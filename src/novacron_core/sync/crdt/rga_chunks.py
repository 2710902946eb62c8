"""The RGA's local index: chunks of elements in a doubly linked list (see ``rga.py``)."""

from __future__ import annotations

from typing import Any

MAX = 128  # elements per chunk, at most
PIECE = 96  # a chunk cut from a longer splice holds about this many
# Inside a replica an id is one int, ``lamport << SHIFT | replica#`` (replica# indexes the
# replica's own name table): a third of the memory of a tuple, and cheap to hash. Ids are
# ``(lamport, replica name)`` tuples everywhere else (deltas, wire, API). A stamp is an int
# the same way; -1: unknown (never collected), 0: known to be stable.
SHIFT = 20
MASK = (1 << SHIFT) - 1
STEP = 1 << SHIFT
GAP = 1 << 32  # spacing of chunk order labels


class _Gone:
    __slots__ = ()

    def __repr__(self) -> str:
        return "<deleted>"


GONE: Any = _Gone()  # tombstone marker in a chunk's values


class Chunk:
    __slots__ = ("ids", "label", "next", "origins", "prev", "stamps", "vals", "vis")

    def __init__(
        self,
        ids: list[int],
        origins: list[int | None],
        vals: list[Any],
        stamps: list[int | None] | None = None,
    ) -> None:
        self.ids = ids
        self.origins = origins
        self.vals = vals  # values, GONE for tombstones
        # per element: None (visible) or the stamp of its delete (an int, see rga_chunks'
        # SHIFT; -1: unknown, 0: known to be collectable). A list beside ``vals`` keeps the
        # tombstone test an identity check, and lets GC reason about a chunk's deletes at once
        self.stamps: list[int | None] = stamps if stamps is not None else [None] * len(ids)
        self.vis = len(vals) - vals.count(GONE)
        self.prev: Chunk | None = None
        self.next: Chunk | None = None
        self.label = 0


def nth_visible(vals: list[Any], k: int) -> int:
    """Physical index of the k-th (0-based) visible value of a chunk."""
    for j, v in enumerate(vals):
        if v is not GONE:
            if not k:
                return j
            k -= 1
    raise IndexError(k)
