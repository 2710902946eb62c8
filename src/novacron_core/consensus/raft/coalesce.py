"""Merge the contiguous appends one batch sends to the same follower into one message.

Under load the driver steps the leader once per proposal, and each step sends the new
entry to every follower: a batch of 50 proposals becomes 50 appends per follower, each
costing a frame, a decode and an answer. Contiguous appends (the second starts where the
first ends, same term) say the same as one append with both entries, so merging them is
invisible to Raft: the answer acknowledges the last index (freeing every merged in-flight
slot) and echoes the highest ReadIndex ctx, which was opened before the merged message left.
"""

from __future__ import annotations

from typing import Any

from novacron_core.consensus.raft.messages import Append


def coalesce(messages: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    last_append: dict[str, int] = {}  # dst -> position in out of its latest Append
    for dst, msg in messages:
        if isinstance(msg, Append):
            i = last_append.get(dst)
            if i is not None:
                prev = out[i][1]
                end = prev.prev_index + len(prev.entries)
                end_term = prev.entries[-1].term if prev.entries else prev.prev_term
                if prev.term == msg.term and msg.prev_index == end and msg.prev_term == end_term:
                    out[i] = (
                        dst,
                        Append(
                            msg.term,
                            prev.prev_index,
                            prev.prev_term,
                            prev.entries + msg.entries,
                            max(prev.commit, msg.commit),
                            max(prev.ctx, msg.ctx),
                        ),
                    )
                    continue
            last_append[dst] = len(out)
        else:
            last_append.pop(dst, None)  # keep order relative to other message kinds
        out.append((dst, msg))
    return out
