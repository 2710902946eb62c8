"""Multi-Paxos behaviours one at a time: what each step persists before it speaks, phase 1
once per ballot, pipelining, failover, hole filling, catch-up (slots and snapshots),
recovery from disk, membership epochs, flexible quorums, leadership transfer."""

from __future__ import annotations

import random

import pytest

from novacron_core.codec import decode, encode
from novacron_core.consensus.interface import (
    BARRIER,
    BUSY,
    CONFIG,
    LEADER,
    NOOP,
    NOT_LEADER,
    OK,
    REJECTED,
    UNKNOWN,
    ChangeMember,
    GroupTuning,
    Propose,
    Read,
    Restored,
    TransferLeader,
    UnsupportedSetting,
)
from novacron_core.consensus.kv import PUT, KVCommand, KVQuery, KVResult, KVStore
from novacron_core.consensus.paxos import PROTOCOL, MemoryStorage, PaxosNode
from novacron_core.consensus.paxos.coalesce import coalesce
from novacron_core.consensus.paxos.messages import (
    Accept,
    Accepted,
    Ballot,
    Heartbeat,
    Prepare,
    Promise,
    Slot,
)
from novacron_core.consensus.paxos.storage import Accepts, Promised
from novacron_core.consensus.quorum import parse_strategy
from novacron_core.machine import Ready
from novacron_core.sim import World
from tests.consensus.paxos_cluster import FAST, PaxosCluster


def cmd(key: str, value: bytes) -> Propose:
    return Propose(encode(KVCommand(PUT, key, value)))


def lone_acceptor() -> PaxosNode:
    n = PaxosNode(
        "n2", MemoryStorage().load(), KVStore(), random.Random(1), FAST, ("n1", "n2", "n3")
    )
    n.on_start(0.0)
    return n


def test_a_promise_is_fsynced_before_the_promise_message_leaves() -> None:
    n = lone_acceptor()
    ready = n.on_message(0.01, "n1", Prepare(Ballot(3, "n1"), 0, 0))
    assert ready.sync
    assert Promised(Ballot(3, "n1")) in ready.writes
    assert [type(m) for _, m in ready.messages] == [Promise]
    # A lower ballot afterwards is refused and promises nothing new.
    ready = n.on_message(0.02, "n3", Prepare(Ballot(2, "n3"), 0, 0))
    assert not ready.writes
    assert ready.messages[0][1].promised == Ballot(3, "n1")


def test_an_accepted_value_is_fsynced_before_accepted_is_sent() -> None:
    n = lone_acceptor()
    b = Ballot(1, "n1")
    s = Slot(1, b, 0, 0, encode(KVCommand(PUT, "k", b"x")))
    ready = n.on_message(0.01, "n1", Accept(b, 0, [s], 0))
    assert ready.sync
    assert Accepts([s]) in ready.writes
    assert ready.messages == [("n1", Accepted(b, 0, [1], 0))]
    # Once the leader says slot 1 is chosen, the acceptor applies it.
    ready = n.on_message(0.02, "n1", Heartbeat(b, 0, 1, 0))
    assert [e.index for e in ready.committed] == [1]


def test_phase_1_runs_once_per_ballot_and_phase_2_is_pipelined() -> None:
    c = PaxosCluster(seed=5)
    prepares: list[object] = []
    inflight: list[int] = []

    def watch(world: World, name: str, ready: Ready) -> None:
        prepares.extend(m for _, m in ready.messages if isinstance(m, Prepare))
        m = world.machine(name)
        if m is not None and m.role == LEADER:
            inflight.append(len(m.acks))

    lead = c.wait_leader()
    c.world.ready_observers.append(watch)
    for i in range(60):  # 60 concurrent proposals: no waiting for one before the next
        c.world.request(lead, cmd(f"k{i}", b"v"))
    c.world.run_for(1.0)
    assert prepares == []  # the stable leader never ran phase 1 again
    assert max(inflight) >= 30  # many slots in flight at once
    assert c.node(lead).commit >= 61
    assert all(c.node(n).applied == c.node(lead).commit for n in c.names)


def test_a_crashed_leader_is_replaced_and_no_acknowledged_write_is_lost() -> None:
    c = PaxosCluster(seed=8)
    acked = []
    for round_ in range(5):
        for i in range(10):
            r = c.put(f"k{round_}-{i}", b"v")
            assert r is not None
            assert r.status == OK
            acked.append(f"k{round_}-{i}")
        old = c.wait_leader()
        c.world.crash(old, lose_unsynced=True)
        new = c.wait_leader()
        assert new != old
        assert c.node(new).ballot > Ballot(0, "")
        c.world.restart(old)
    c.wait_leader()
    for key in acked:
        assert c.get(key) == b"v", key


def test_a_hole_is_filled_with_a_noop_and_later_values_survive() -> None:
    c = PaxosCluster(seed=2)
    lead = c.wait_leader()
    m = c.node(lead)
    ballot, epoch = m.ballot, m.epoch
    base = m.commit
    # An old leader got slot base+2 accepted by n2 and n3, but slot base+1 reached nobody.
    value = encode(KVCommand(PUT, "late", b"kept"))
    for n in c.names:
        c.world.crash(n, lose_unsynced=False)
    orphan = Slot(base + 2, Ballot(ballot.round, lead), epoch, 0, value)
    for n in ("n2", "n3"):
        c.world.nodes[n].durable.apply([Accepts([orphan])])
    for n in c.names:
        c.world.restart(n)
    new = c.wait_leader()
    filled = c.node(new).log.get(base + 1)
    assert c.get("late") == b"kept"
    c.world.run_for(0.5)
    slot = c.node(new).log.get(base + 1) or filled
    assert slot is not None
    assert slot.kind == NOOP
    assert c.node(new).log[base + 3].kind == BARRIER


def test_a_lagging_acceptor_catches_up_by_slots_then_by_snapshot() -> None:
    c = PaxosCluster(seed=3)
    lead = c.wait_leader()
    lagger = next(n for n in c.names if n != lead)
    c.world.partition([[lagger]])
    for i in range(10):
        assert c.put(f"a{i}", b"1") is not None
    c.world.heal()
    c.world.run_for(0.5)
    assert c.node(lagger).commit == c.node(lead).commit  # by Learn (no snapshot yet)
    events: list[object] = []
    c.world.ready_observers.append(
        lambda w, name, r: events.extend(r.committed) if name == lagger else None
    )
    c.world.partition([[lagger]])
    for i in range(100):  # past snapshot_entries: the leader compacts the slots away
        assert c.put(f"b{i}", b"2") is not None
    assert c.node(lead).snap.index > c.node(lagger).commit
    c.world.heal()
    c.world.run_for(0.5)
    assert c.node(lagger).commit == c.node(lead).commit
    assert any(isinstance(e, Restored) for e in events)
    got = decode(c.node(lagger).sm.query(encode(KVQuery("b42"))) or b"", KVResult)
    assert got.value == b"2"


def test_a_restarted_member_applies_its_chosen_prefix_from_disk() -> None:
    c = PaxosCluster(seed=4)
    for i in range(25):
        assert c.put(f"k{i}", b"v") is not None
    c.world.run_for(0.3)
    follower = next(n for n in c.names if n != c.wait_leader())
    applied = c.node(follower).applied
    c.world.partition([[follower]])  # nothing more from the leader while it restarts
    c.world.crash(follower, lose_unsynced=False)
    c.world.restart(follower)
    assert c.node(follower).applied == applied  # from its own disk, before any message
    assert decode(c.node(follower).sm.query(encode(KVQuery("k24"))) or b"", KVResult).ok


def test_membership_changes_start_a_new_epoch_with_the_new_voters() -> None:
    c = PaxosCluster(seed=6, spares=("n4",))
    assert c.put("before", b"1") is not None
    assert (r := c.change("add_learner", "n4")) is not None
    assert r.status == OK
    c.world.run_for(0.5)
    assert c.node("n4").applied == c.node(c.wait_leader()).applied
    assert (r := c.change("promote", "n4")) is not None
    assert r.status == OK
    lead = c.wait_leader()
    assert c.node(lead).epoch == 2
    assert c.node(lead).conf.voters == ("n1", "n2", "n3", "n4")
    assert (r := c.change("remove", lead)) is not None
    assert r.status == OK
    new = c.wait_leader()
    assert new != lead
    assert lead not in c.node(new).conf.members()
    assert c.node(new).epoch == 3
    assert c.put("after", b"2") is not None
    assert c.get("before") == b"1"
    c.world.run_for(0.5)
    kinds = [c.node(new).log[i].kind for i in sorted(c.node(new).log)]
    assert kinds.count(CONFIG) >= 1


def test_a_change_that_breaks_the_quorum_rule_is_rejected_naming_the_sizes() -> None:
    five = ("n1", "n2", "n3", "n4", "n5")
    c = PaxosCluster(
        seed=9, voters=five, spares=("n6",), quorum=parse_strategy("flexible:q1=3,q2=3")
    )
    assert c.put("k", b"v") is not None
    r = c.change("add_voter", "n6")
    assert r is not None
    assert r.status == REJECTED
    assert "|Q1| 3 + |Q2| 3 = 6 is not more than N = 6" in r.detail
    c.world.run_for(0.2)
    assert c.node(c.wait_leader()).conf.voters == five


def test_flexible_quorums_accept_with_two_of_five_and_need_four_to_lead() -> None:
    five = ("n1", "n2", "n3", "n4", "n5")
    c = PaxosCluster(seed=10, voters=five, quorum=parse_strategy("flexible:q2=2"))
    lead = c.wait_leader()
    partner = next(n for n in five if n != lead)
    c.world.partition([[lead, partner]])  # three of five cut off
    r = c.put("two", b"enough")
    assert r is not None
    assert r.status == OK  # phase 2 needs 2 of 5
    c.world.crash(lead)
    c.world.run_for(3.0)
    assert c.leader() is None  # phase 1 needs 4: the three and n-partner cannot meet
    c.world.heal()
    c.world.restart(lead)
    c.wait_leader()
    assert c.get("two") == b"enough"


def test_leadership_moves_on_request_and_proposals_wait_meanwhile() -> None:
    c = PaxosCluster(seed=12)
    lead = c.wait_leader()
    target = next(n for n in c.names if n != lead)
    r = c.call(lead, TransferLeader(target))
    assert r is not None
    assert r.status == OK
    c.world.run_while(lambda: c.leader() != target, c.world.now + 2.0)
    assert c.leader() == target
    r = c.call(lead, cmd("x", b"1"))
    assert r is not None
    assert r.status == NOT_LEADER
    assert r.leader == target


def test_a_deposed_leaders_pending_proposals_are_unknown_not_failed() -> None:
    c = PaxosCluster(seed=13)
    lead = c.wait_leader()
    c.world.partition([[lead]])
    replies = []
    c.world.request(lead, cmd("x", b"1"), lambda now, r: replies.append(r))
    c.world.run_for(2.0)  # CheckQuorum makes it step down
    assert [r.status for r in replies] == [UNKNOWN]
    assert c.node(lead).role != LEADER  # (it campaigns again, in vain while cut off)


def test_reads_and_busy_and_wrong_member_replies() -> None:
    c = PaxosCluster(seed=14)
    lead = c.wait_leader()
    follower = next(n for n in c.names if n != lead)
    assert c.put("k", b"v") is not None
    r = c.call(follower, Read(encode(KVQuery("k"))))
    assert r is not None
    assert (r.status, r.leader) == (NOT_LEADER, lead)
    r = c.call(lead, ChangeMember("remove", "nobody"))
    assert r is not None
    assert r.status == REJECTED
    c.node(lead).transferee = follower
    c.node(lead).transfer_deadline = c.world.now + 10
    r = c.call(lead, cmd("k", b"w"))
    assert r is not None
    assert r.status == BUSY


def test_consecutive_accepts_merge_into_one_message() -> None:
    b = Ballot(1, "n1")
    s1, s2, s3 = (Slot(i, b, 0, 0, b"") for i in (1, 2, 3))
    out = coalesce(
        [
            ("n2", Accept(b, 0, [s1], 0)),
            ("n3", Accept(b, 0, [s1], 0)),
            ("n2", Accept(b, 0, [s2], 1)),
            ("n2", Heartbeat(b, 0, 1)),
            ("n2", Accept(b, 0, [s3], 1)),
            ("n1", Accepted(b, 0, [1], 0)),
            ("n1", Accepted(b, 0, [2], 0)),
        ]
    )
    assert out == [
        ("n2", Accept(b, 0, [s1, s2], 1)),
        ("n3", Accept(b, 0, [s1], 0)),
        ("n2", Heartbeat(b, 0, 1)),
        ("n2", Accept(b, 0, [s3], 1)),
        ("n1", Accepted(b, 0, [1, 2], 0)),
    ]


def test_the_protocol_refuses_quorums_it_cannot_honour() -> None:
    tuning = GroupTuning(quorum="flexible:q2=1,q1=1")
    with pytest.raises(
        UnsupportedSetting, match=r"\|Q1\| 1 \+ \|Q2\| 1 = 2 is not more than N = 2"
    ):
        PROTOCOL.member("n1", MemoryStorage(), KVStore(), random.Random(1), tuning, ("n1", "n2"))
    m = PROTOCOL.member("n1", MemoryStorage(), KVStore(), random.Random(1), GroupTuning(), ("n1",))
    m.on_start(0.0)
    ready = m.on_tick(5.0)
    assert m.status().role == LEADER  # a group of one leads itself
    assert m.status().protocol == "multi-paxos"
    assert ready.soft_state is not None
