"""Regressions of issue 14: replicas that agreed on a wrong value. Each test failed before its fix.

1. a PN-Counter nested in an OR-Map counted every replica's increments under one entry;
2. a re-created OR-Map key reused nested dots its removed incarnation had spent;
3. a remove issued after an OR-Set GC missed dots that peers holding the pre-GC state kept;
4. ``1``, ``True`` and ``1.0`` collapsed into one set element (and one map key) in memory.
"""

from __future__ import annotations

from novacron_core.sync.crdt import ORMap, PNCounter

# ---------------------------------------------------------------- 1: nested PN-Counter


def test_pn_counter_in_an_or_map_counts_concurrent_increments_of_every_replica() -> None:
    a, b = ORMap("a"), ORMap("b")
    da = a.update("k", PNCounter, lambda c: c.increment(5))
    db = b.update("k", PNCounter, lambda c: c.increment(1))
    a.merge(db)
    b.merge(da)
    assert a.value() == b.value() == {"k": 6}
    da = a.update("k", PNCounter, lambda c: c.decrement(2))
    db = b.update("k", PNCounter, lambda c: c.decrement(3))
    a.merge(db)
    b.merge(da)
    assert a.value() == b.value() == {"k": 1}
