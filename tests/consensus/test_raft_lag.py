"""Timers under event-loop lag: a process that was not running (CPU starvation) wakes with
its timer long overdue and its peers' messages still unread. It must read them before
acting on the stale view: no CheckQuorum step-down of a leader whose followers did answer,
no campaign by a follower whose leader did send heartbeats (nor a PreVote granted to one).
A dead leader or a real partition is still acted on, at most one grace period later."""

from __future__ import annotations

from tests.consensus.scenario import Scenario

HB = 0.125  # exact in binary floating point, so round boundaries land on ticks


def _run(sc: Scenario, *steps: str) -> None:
    for s in steps:
        sc.step(s.split())


def _group() -> Scenario:
    sc = Scenario()
    _run(
        sc,
        f"config election_timeout=1.0 heartbeat_interval={HB} lag_tolerance={HB}",
        "nodes n1 n2 n3",
        "campaign n1",
        "stabilize",
        "expect leader n1",
    )
    return sc


def _healthy(sc: Scenario, rounds: int, ticking: str = "n1 n2 n3") -> None:
    for _ in range(rounds):
        _run(sc, f"time {HB}", f"tick {ticking}", "stabilize")


def test_a_starved_leader_reads_its_followers_answers_before_checkquorum() -> None:
    sc = _group()
    _healthy(sc, 7)  # on time, answered
    # At t = 1.0 (a CheckQuorum round ends) a heartbeat goes out and is answered, then n1
    # is starved: the answers wait unread.
    _run(sc, f"time {HB}", "tick n1", "deliver n2 n3")
    _run(sc, "time 2.25", "tick n1")  # wakes more than one CheckQuorum round late
    _run(sc, "expect role n1 leader", "expect term n1 1")
    _run(sc, "deliver n1")
    _healthy(sc, 24)
    _run(sc, "expect leader n1", "expect term n1 1")


def test_a_leader_cut_off_still_steps_down() -> None:
    sc = _group()
    _healthy(sc, 8)
    _run(sc, "partition n1 | n2 n3")
    for _ in range(int(2.0 / HB) + 2):  # on time, nobody answers: within the window + a tick
        _run(sc, f"time {HB}", "tick n1", "stabilize")
    _run(sc, "expect role n1 follower", "expect term n1 1")


def test_a_starved_follower_reads_the_queued_heartbeat_before_campaigning() -> None:
    sc = _group()
    _healthy(sc, 8)
    _run(sc, f"time {HB}", "tick n1")  # a heartbeat sits in n2's and n3's inboxes
    _run(sc, "time 2.5", "tick n2 n3")  # both starved past any election deadline
    _run(sc, "expect role n2 follower", "expect role n3 follower")
    _run(sc, "deliver n2 n3", "deliver n1")
    _healthy(sc, 24)
    _run(sc, "expect leader n1", "expect term n1 1")


def test_a_dead_leader_is_still_replaced_after_one_grace_period() -> None:
    sc = _group()
    _healthy(sc, 8)
    _run(sc, "crash n1", "time 2.5", "tick n2 n3")  # late: one grace period first
    _run(sc, "expect role n2 follower", "expect role n3 follower")
    took = 0.0
    while "leader" not in (sc.node("n2").role, sc.node("n3").role) and took < 3.0:
        _run(sc, f"time {HB}", "tick n2 n3", "stabilize n2 n3")
        took += HB
    assert "leader" in (sc.node("n2").role, sc.node("n3").role)
    assert took <= 2 * 1.0 + 2 * HB  # the grace (one election timeout, randomized), a PreVote
    assert sc.node("n2").term == sc.node("n3").term == 2
