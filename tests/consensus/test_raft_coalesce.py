"""Coalescing a batch's appends: contiguous ones merge, anything else keeps its order."""

from __future__ import annotations

from novacron_core.consensus.raft.coalesce import coalesce
from novacron_core.consensus.raft.messages import Append, AppendResp, Entry


def test_contiguous_appends_to_one_follower_merge() -> None:
    a1 = Append(3, 4, 3, [Entry(3, 5)], 4, ctx=0)
    a2 = Append(3, 5, 3, [Entry(3, 6), Entry(3, 7)], 5, ctx=9)
    other = Append(3, 4, 3, [Entry(3, 5)], 4)
    out = coalesce([("b", a1), ("c", other), ("b", a2)])
    assert out == [
        ("b", Append(3, 4, 3, [Entry(3, 5), Entry(3, 6), Entry(3, 7)], 5, 9)),
        ("c", other),
    ]


def test_gaps_term_changes_and_other_messages_are_not_merged() -> None:
    a1 = Append(3, 4, 3, [Entry(3, 5)], 4)
    gap = Append(3, 9, 3, [Entry(3, 10)], 4)  # a probe elsewhere in the log
    resp = AppendResp(3, True, 5)
    after = Append(3, 10, 3, [Entry(3, 11)], 4)
    out = coalesce([("b", a1), ("b", gap), ("b", resp), ("b", after)])
    assert [m for _, m in out] == [a1, gap, resp, after]
