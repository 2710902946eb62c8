"""``RaftNode.abstain``: a member whose disk was lost takes no part in elections (grants no
Vote or PreVote, never campaigns) while still replicating, until its runtime clears it."""

from __future__ import annotations

import random
from typing import Any

from novacron_core.codec import encode
from novacron_core.consensus.kv import KVStore
from novacron_core.consensus.raft import (
    FOLLOWER,
    ConfigState,
    Entry,
    RaftConfig,
    RaftNode,
    Recovered,
)
from novacron_core.consensus.raft.messages import (
    CONFIG,
    NOOP,
    Append,
    AppendResp,
    TimeoutNow,
    Vote,
    VoteResp,
)
from novacron_core.machine import Ready

CFG = RaftConfig(election_timeout=0.3, heartbeat_interval=0.05)


def _node(voters: tuple[str, ...] = ("a", "b", "c")) -> RaftNode:
    return RaftNode("c", Recovered(), KVStore(), random.Random(7), CFG, voters)


def _sent(ready: Ready, kind: type) -> list[tuple[str, Any]]:
    return [(dst, m) for dst, m in ready.messages if isinstance(m, kind)]


def _votes(n: RaftNode, now: float) -> list[VoteResp]:
    """Ask ``n`` for a PreVote then a Vote from an up-to-date candidate of a higher term."""
    out = []
    for pre in (True, False):
        term = n.term + 1
        ready = n.on_message(now, "a", Vote(term, n.log.last_index, n.log.last_term, pre=pre))
        out += [m for _, m in _sent(ready, VoteResp)]
    return out


def test_an_abstaining_voter_grants_no_vote_and_never_campaigns() -> None:
    n = _node()
    n.abstain = True
    n.on_start(0.0)
    assert "c" in n.conf.voters
    for now in (1.0, 2.0, 5.0, 10.0):  # election timeouts pass: no campaign
        ready = n.on_tick(now)
        assert not _sent(ready, Vote)
        assert (n.role, n.term) == (FOLLOWER, 0)
    assert not _sent(n.on_peer_unreachable(10.5, "a"), Vote)
    assert not _sent(n.on_tick(11.0), Vote)
    assert not _sent(n.on_message(11.1, "a", TimeoutNow(n.term)), Vote)
    assert n.role == FOLLOWER
    resps = _votes(n, 12.0)
    assert [(r.pre, r.granted) for r in resps] == [(True, False), (False, False)]
    assert n.vote is None

    # Clearing the flag restores normal behaviour: votes granted, campaigns on timeout.
    n.abstain = False
    resps = _votes(n, 13.0)
    assert [(r.pre, r.granted) for r in resps] == [(True, True), (False, True)]
    assert n.vote == "a"
    ready = n.on_tick(n.election_deadline)  # on time (a late tick first gets a grace period)
    assert {dst for dst, _ in _sent(ready, Vote)} == {"a", "b"}


def test_an_abstaining_joiner_replicates_but_stays_out_of_elections_once_listed() -> None:
    """Started empty (no bootstrap config): the old configuration, which still lists it
    as a voter, reaches it through the log. It acknowledges appends truthfully and still
    does not vote or campaign."""
    n = _node(voters=())
    n.abstain = True
    n.on_start(0.0)
    conf = ConfigState(("a", "b", "c"), ())
    entries = [Entry(1, 1, CONFIG, encode(conf)), Entry(1, 2, NOOP)]
    ready = n.on_message(0.1, "a", Append(1, 0, 0, entries, 2))
    acks = [m for _, m in _sent(ready, AppendResp)]
    assert [(r.success, r.match) for r in acks] == [(True, 2)]
    assert (n.conf.voters, n.commit) == (("a", "b", "c"), 2)
    assert not _sent(n.on_tick(5.0), Vote)
    assert n.role == FOLLOWER
    assert [r.granted for r in _votes(n, 6.0)] == [False, False]
