"""Dot stores (Almeida et al., section 5): the join that makes observed-remove types work.

A dot store maps dots (unique events) to payloads and travels with a causal context (every dot
its sender has *seen*). Joining keeps a dot if both sides have it, or if one side has it and
the other side has never seen it; a dot one side has seen but no longer holds was removed.
Removals therefore need no tombstones: the compressed context remembers them.
"""

from __future__ import annotations

from typing import TypeVar

from novacron_core.clocks import CausalContext, Dot, VersionVector

V = TypeVar("V")


def join_dotfun(
    mine: dict[Dot, V], my_ctx: CausalContext, theirs: dict[Dot, V], their_ctx: CausalContext
) -> None:
    """``mine := mine ⊔ theirs`` in place (contexts are joined by the caller, afterwards)."""
    dead = [d for d in mine if d not in theirs and their_ctx.contains(d)]
    for d in dead:
        del mine[d]
    for d, v in theirs.items():
        if d not in mine and not my_ctx.contains(d):
            mine[d] = v


def context_of(dots: list[Dot]) -> CausalContext:
    return CausalContext(VersionVector(), dots)


def compact_stable(ctx: CausalContext, stable: VersionVector) -> None:
    """Fold the causally stable prefix into the context's version vector.

    ``stable`` only names dots every replica (this one included) has seen, so the context
    already holds them all: raising the vector to it closes any gap left in the cloud by
    deltas that arrived out of order, and drops the cloud dots it covers.
    """
    if not ctx.cloud:
        return
    counters = ctx.vv.counters
    for r, c in stable.counters.items():
        if c > counters.get(r, 0):
            counters[r] = c
    ctx.compact()
