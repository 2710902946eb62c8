"""Merge what one batch sends the same member into fewer messages.

Under load the driver steps the leader once per proposal, and each step sends that slot's
Accept to every member; a follower answers each with an Accepted. Consecutive Accepts of
one ballot to one member say the same as one Accept of all their slots (and the highest
commit index), and likewise for Accepted, so merging them is invisible to the protocol.
"""

from __future__ import annotations

from typing import Any

from novacron_core.consensus.paxos.messages import Accept, Accepted


def coalesce(messages: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    last: dict[str, int] = {}  # dst -> position in out of its latest Accept/Accepted
    for dst, msg in messages:
        if isinstance(msg, Accept | Accepted):
            i = last.get(dst)
            merged = None if i is None else _merge(out[i][1], msg)
            if i is not None and merged is not None:
                out[i] = (dst, merged)
                continue
            last[dst] = len(out)
        else:
            last.pop(dst, None)  # keep order relative to other message kinds
        out.append((dst, msg))
    return out


def _merge(prev: Any, msg: Accept | Accepted) -> Accept | Accepted | None:
    if (prev.ballot, prev.epoch) != (msg.ballot, msg.epoch):
        return None
    commit = max(prev.commit, msg.commit)
    if isinstance(prev, Accept) and isinstance(msg, Accept):
        return Accept(msg.ballot, msg.epoch, prev.slots + msg.slots, commit)
    if isinstance(prev, Accepted) and isinstance(msg, Accepted):
        return Accepted(msg.ballot, msg.epoch, prev.indexes + msg.indexes, commit)
    return None
