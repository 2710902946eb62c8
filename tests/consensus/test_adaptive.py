"""Adaptive selection: the decision table against a reference written from the documented
rules, and the selector over noisy measurements (it must not flap, yet must follow a real
change)."""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from novacron_core.consensus.adaptive import Conditions, Selector, Thresholds, decide

TH = Thresholds()


def uniform(
    members: int,
    rtt: float,
    regions: int = 1,
    conflict: float = 0.0,
    writes: float = 100.0,
    churn: int = 0,
    eventual: bool = False,
    suspected: frozenset[str] = frozenset(),
) -> Conditions:
    """``members`` nodes spread over ``regions`` regions, every pair ``rtt`` apart."""
    names = [f"n{i}" for i in range(members)]
    return Conditions(
        regions={n: f"r{i % regions}" for i, n in enumerate(names)},
        rtt_ms={(a, b): rtt for a in names for b in names if a < b},
        conflict_rate=conflict,
        write_rate=writes,
        leader_changes=churn,
        suspected=suspected,
        eventual_allowed=eventual,
    )


# (members, quorum RTT ms, regions, conflict, writes/s, leader changes, eventual allowed)
# -> protocol: the documented rules, row by row, at points well inside each cell
TABLE = [
    ((1, 300, 1, 0.9, 100, 9, True), "raft"),  # small: nothing to win
    ((3, 10, 1, 0.0, 100, 0, False), "raft"),  # near
    ((5, 40, 3, 0.5, 100, 0, True), "raft"),  # near, 3 regions
    ((5, 40, 5, 0.0, 100, 0, False), "multi-paxos"),  # near but too many regions
    ((3, 120, 3, 0.0, 100, 0, True), "multi-paxos"),  # between the bounds: the default
    ((3, 120, 3, 0.0, 100, 5, False), "epaxos"),  # leader churn, low conflict
    ((3, 120, 3, 0.5, 100, 5, False), "multi-paxos"),  # leader churn, high conflict
    ((5, 300, 5, 0.0, 100, 0, True), "eventual"),  # wide, allowed
    ((5, 300, 5, 0.02, 100, 0, False), "epaxos"),  # wide, low conflict
    ((5, 300, 5, 0.5, 100, 0, False), "multi-paxos"),  # wide, high conflict
    ((5, 300, 5, 0.0, 0.1, 0, False), "multi-paxos"),  # wide, conflict not yet trusted
]


@pytest.mark.parametrize(("row", "expected"), TABLE, ids=[f"{r}" for r, _ in TABLE])
def test_the_decision_table_rows(row: tuple[float, ...], expected: str) -> None:
    members, rtt, regions, conflict, writes, churn, eventual = row
    c = uniform(int(members), rtt, int(regions), conflict, writes, int(churn), bool(eventual))
    d = decide(c, TH)
    assert d.protocol == expected, d.reason
    assert d.reason.startswith(f"{expected}: ")


def reference(
    members: int, q: float, regions: int, conflict: float, writes: float, churn: int, ev: bool
) -> str:
    """The rules of docs/consensus.md as a plain if-chain, without hysteresis."""
    if members < 3:
        return "raft"
    if q < 50 and regions <= 3:
        return "raft"
    if q > 200 and ev:
        return "eventual"
    if q > 200 or churn >= 3:
        if writes < 1:
            return "multi-paxos"
        return "epaxos" if conflict < 0.10 else "multi-paxos"
    return "multi-paxos"


def off_threshold(lo: float, hi: float, *bounds: float) -> st.SearchStrategy[float]:
    """Values not within 1e-6 of a threshold (ties are not what the table is about)."""
    return st.floats(lo, hi).filter(lambda v: all(abs(v - b) > 1e-6 for b in bounds))


@settings(max_examples=300, deadline=None)
@given(
    members=st.integers(1, 7),
    rtt=off_threshold(0.1, 500, 50, 200),
    regions=st.integers(1, 7),
    conflict=off_threshold(0, 1, 0.10),
    writes=off_threshold(0, 50, 1.0),
    churn=st.integers(0, 6),
    ev=st.booleans(),
)
def test_decide_matches_the_reference_table(
    members: int, rtt: float, regions: int, conflict: float, writes: float, churn: int, ev: bool
) -> None:
    regions = min(regions, members)
    c = uniform(members, rtt, regions, conflict, writes, churn, ev)
    assert decide(c, TH).protocol == reference(members, rtt, regions, conflict, writes, churn, ev)


def test_the_quorum_rtt_is_the_best_leaders_trip_to_a_majority() -> None:
    # n0, n1 in one region 2 ms apart; n2 far from both: a commit needs n0 + n1 only
    c = Conditions(
        regions={"n0": "a", "n1": "a", "n2": "b"},
        rtt_ms={("n0", "n1"): 2.0, ("n0", "n2"): 150.0, ("n2", "n1"): 160.0},
    )
    assert c.quorum_rtt() == 2.0
    assert decide(c).protocol == "raft"
    # with n1 down its measurements say nothing: n0 -> n2 is the trip, and unmeasured
    # pairs count as unreachable
    down = Conditions(regions=c.regions, rtt_ms=c.rtt_ms, suspected=frozenset({"n1"}))
    assert down.quorum_rtt() == 150.0
    assert Conditions(regions=c.regions).quorum_rtt() == float("inf")


def test_bad_thresholds_are_refused_naming_them() -> None:
    with pytest.raises(ValueError, match="raft_rtt_ms"):
        Thresholds(raft_rtt_ms=300)
    with pytest.raises(ValueError, match="hysteresis"):
        Thresholds(hysteresis=1.5)


# --- over time: no flapping, but real changes are followed ------------------------------


def noisy(base: Conditions, amplitude: float, rng: random.Random) -> Conditions:
    """``base`` with every RTT and the conflict rate off by up to +-amplitude (relative)."""
    jitter = lambda v: v * (1 + rng.uniform(-amplitude, amplitude))  # noqa: E731
    return Conditions(
        regions=base.regions,
        rtt_ms={k: jitter(v) for k, v in base.rtt_ms.items()},
        conflict_rate=min(1.0, jitter(base.conflict_rate)),
        write_rate=base.write_rate,
        leader_changes=base.leader_changes,
        eventual_allowed=base.eventual_allowed,
    )


def run(sel: Selector, stream: Iterator[Conditions], every_s: float = 10.0, t0: float = 0.0) -> int:
    t = t0
    for c in stream:
        t += every_s
        sel.observe(t, c)
    return sel.switches


# points right on a threshold: the worst place for noise
ON_THE_LINE = {
    "raft/multi-paxos": uniform(3, 50.0, 3, 0.0),
    "multi-paxos/epaxos": uniform(5, 200.0, 5, 0.02),
    "epaxos/multi-paxos by conflict": uniform(5, 300.0, 5, 0.10),
    "multi-paxos/eventual": uniform(5, 200.0, 5, 0.5, eventual=True),
}


@pytest.mark.parametrize("name", list(ON_THE_LINE))
def test_noisy_measurements_around_a_threshold_do_not_flap(name: str) -> None:
    base = ON_THE_LINE[name]
    rng = random.Random(name)
    samples = [noisy(base, 0.08, rng) for _ in range(2000)]  # ~5.5 hours, every 10 s
    calm = Selector(decide(samples[0]).protocol, 0.0)
    assert run(calm, iter(samples)) <= 1
    # the same stream without the guards flaps: the count above is not vacuous
    bare = Thresholds(hysteresis=0.0, confirm_s=0.0, dwell_s=0.0)
    assert run(Selector(decide(samples[0]).protocol, 0.0, bare), iter(samples)) > 50


@settings(max_examples=150, deadline=None)
@given(
    members=st.sampled_from([3, 5, 7]),
    rtt=st.floats(5, 400),
    regions=st.integers(1, 7),
    conflict=st.floats(0, 0.5),
    churn=st.integers(0, 5),
    ev=st.booleans(),
    seed=st.integers(0, 2**32),
)
def test_noise_inside_the_band_never_goes_back_and_forth(
    members: int, rtt: float, regions: int, conflict: float, churn: int, ev: bool, seed: int
) -> None:
    """Wherever the group sits and whatever it starts with, measurements jittering by less
    than half the hysteresis band never bring the selector back to a protocol it left, and
    it settles within two switches (two when the first new answer lies itself near another
    threshold, e.g. from epaxos at high conflict to multi-paxos, near the eventual line)."""
    base = uniform(members, rtt, min(regions, members), conflict, 100.0, churn, ev)
    rng = random.Random(seed)
    start = rng.choice(["raft", "multi-paxos", "epaxos", "eventual"])
    sel = Selector(start, -1000.0)  # long past its dwell: free to switch at once
    seen, t = [start], 0.0
    for _ in range(300):
        t += 10.0
        if sel.observe(t, noisy(base, TH.hysteresis / 2.5, rng)).switched:
            seen.append(sel.protocol)
    assert len(set(seen)) == len(seen), seen
    assert len(seen) <= 3, seen


def test_a_real_change_is_followed_after_confirmation_and_dwell() -> None:
    sel = Selector("raft", 0.0)
    near, wide = uniform(5, 10.0, 3), uniform(5, 300.0, 5, 0.01)
    assert sel.observe(10.0, near).protocol == "raft"
    held = sel.observe(20.0, wide)  # the network changed: too soon after the start
    assert (held.protocol, held.switched) == ("raft", False)
    assert held.decision.protocol == "epaxos"
    assert "dwell 300 s" in held.reason
    t, first_switch = 20.0, None
    while first_switch is None and t < 1000:
        t += 10.0
        if sel.observe(t, wide).switched:
            first_switch = t
    assert first_switch is not None
    assert first_switch >= 300.0  # dwell
    assert sel.protocol == "epaxos"
    assert sel.status() == {
        "protocol": "epaxos",
        "reason": sel.last.reason if sel.last else "",
        "rule": "wide",
        "switches": 1,
    }
    assert "epaxos: quorum RTT 300.0 ms > 200 ms" in str(sel.status()["reason"])
    # back near: confirmation holds it for confirm_s after the dwell, then it switches
    t = first_switch + TH.dwell_s
    sel.observe(t, near)
    c = sel.observe(t + 10, near)
    assert not c.switched
    assert "must hold" in c.reason
    assert sel.observe(t + TH.confirm_s + 10, near).switched
    assert sel.protocol == "raft"


def test_one_bad_window_does_not_switch() -> None:
    sel = Selector("raft", -1000.0)
    near, wide = uniform(3, 10.0), uniform(3, 300.0, 3, 0.0)
    sel.observe(0.0, near)
    sel.observe(10.0, wide)  # a spike
    assert sel.observe(20.0, near).protocol == "raft"
    sel.observe(30.0, wide)  # another: confirmation starts again
    assert sel.observe(30.0 + TH.confirm_s - 1, wide).protocol == "raft"
    assert sel.switches == 0


def test_no_switch_without_a_live_majority() -> None:
    sel = Selector("raft", -1000.0)
    down = uniform(5, 300.0, 5, 0.0, suspected=frozenset({"n0", "n1", "n2"}))
    for t in range(0, 600, 10):
        c = sel.observe(float(t), down)
    assert sel.switches == 0
    assert "only 2 of 5 members are live" in c.reason
