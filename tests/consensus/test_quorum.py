"""Quorum strategies against a brute-force model: over random memberships, every strategy
either refuses to build (and then two of its quorums really could miss each other) or every
phase-1 quorum meets every phase-2 quorum, the whole membership is a quorum of both phases,
and a superset of a quorum is one."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Collection

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from novacron_core.consensus.quorum import (
    EPaxosQuorums,
    Flexible,
    Grid,
    Hierarchical,
    Majority,
    QuorumError,
    QuorumSystem,
    Weighted,
    parse_strategy,
)

names = st.lists(
    st.text(alphabet="abcdefghn0123456789", min_size=1, max_size=4),
    min_size=1,
    max_size=8,
    unique=True,
)


def subsets(voters: tuple[str, ...]) -> list[frozenset[str]]:
    return [frozenset(c) for r in range(len(voters) + 1) for c in itertools.combinations(voters, r)]


def check_system(q: QuorumSystem) -> None:
    """The property every accepted system must have, checked over every subset."""
    voters = q.voters
    everyone = frozenset(voters)
    assert q.phase1(everyone), q.describe()
    assert q.phase2(everyone), q.describe()
    for s in subsets(voters):
        for phase in (q.phase1, q.phase2):
            if phase(s):  # monotone: adding a voter keeps a quorum a quorum
                assert all(phase(s | {v}) for v in voters), (q.describe(), sorted(s))
        # A phase-1 quorum and a phase-2 quorum that miss each other would be ``s`` and a
        # phase-2 quorum inside its complement (monotone, so the complement itself).
        if q.phase1(s):
            assert not q.phase2(everyone - s), (q.describe(), sorted(s))


def build(make: Callable[[], QuorumSystem]) -> tuple[QuorumSystem | None, str]:
    """The system, or None and the refusal's message."""
    try:
        return make(), ""
    except QuorumError as e:
        return None, str(e)


def disjoint_exists(
    voters: tuple[str, ...],
    p1: Callable[[Collection[str]], bool],
    p2: Callable[[Collection[str]], bool],
) -> bool:
    everyone = frozenset(voters)
    return any(p1(s) and p2(everyone - s) for s in subsets(voters))


@settings(max_examples=150, deadline=None)
@given(voters=names)
def test_majority_quorums_intersect(voters: list[str]) -> None:
    check_system(Majority(voters))


@settings(max_examples=200, deadline=None)
@given(voters=names, q1=st.integers(0, 10), q2=st.integers(0, 10))
def test_flexible_quorums_are_refused_exactly_when_they_could_miss(
    voters: list[str], q1: int, q2: int
) -> None:
    vs = tuple(sorted(voters))
    n = len(vs)
    q, refusal = build(lambda: Flexible(vs, q2, q1))
    if q is None:
        # refused: out of range, or the model finds two quorums that miss each other
        out_of_range = not (1 <= q1 <= n and 1 <= q2 <= n)
        assert out_of_range or disjoint_exists(
            vs, lambda s: len(s) >= q1, lambda s: len(s) >= q2
        ), refusal
        assert str(q1 if not 1 <= q1 <= n else q2) in refusal or f"{q1 + q2}" in refusal
        return
    check_system(q)


@settings(max_examples=200, deadline=None)
@given(
    voters=names,
    weights=st.lists(st.integers(0, 4), min_size=8, max_size=8),
    t1=st.one_of(st.none(), st.integers(1, 20)),
    t2=st.one_of(st.none(), st.integers(1, 20)),
)
def test_weighted_quorums_are_refused_exactly_when_they_could_miss(
    voters: list[str], weights: list[int], t1: int | None, t2: int | None
) -> None:
    vs = tuple(sorted(voters))
    ws = dict(zip(vs, weights, strict=False))
    total = sum(ws.values())
    q, refusal = build(lambda: Weighted(vs, ws, t1, t2))
    if q is None:
        if total == 0:
            return
        a = total // 2 + 1 if t1 is None else t1
        b = total // 2 + 1 if t2 is None else t2
        out_of_range = not (1 <= a <= total and 1 <= b <= total)

        def weight(s: Collection[str]) -> int:
            return sum(ws[v] for v in s)

        assert out_of_range or disjoint_exists(
            vs, lambda s: weight(s) >= a, lambda s: weight(s) >= b
        ), refusal
        assert str(total) in refusal
        return
    check_system(q)


@settings(max_examples=150, deadline=None)
@given(voters=names, cols=st.integers(1, 5))
def test_grid_quorums_intersect(voters: list[str], cols: int) -> None:
    q = Grid(voters, cols)
    assert sorted(v for row in q.rows for v in row) == sorted(voters)
    check_system(q)


@settings(max_examples=150, deadline=None)
@given(data=st.data(), voters=names)
def test_region_aware_quorums_intersect(data: st.DataObject, voters: list[str]) -> None:
    regions = data.draw(st.lists(st.sampled_from("abcd"), min_size=8, max_size=8))
    region_of = dict(zip(voters, regions, strict=False))
    check_system(Hierarchical(voters, region_of))


@pytest.mark.parametrize("n", range(1, 10))
def test_epaxos_fast_quorums_overlap_every_slow_quorum_as_recovery_needs(n: int) -> None:
    for optimized in (True, False):
        q = EPaxosQuorums(n, optimized)
        replicas = tuple(f"r{i}" for i in range(n))
        fast = [set(c) for c in itertools.combinations(replicas, q.fast)]
        slow = [set(c) for c in itertools.combinations(replicas, q.slow)]
        assert min(len(a & b) for a in slow for b in slow) >= 1
        assert min(len(a & b) for a in fast for b in slow) >= q.recovery_overlap


def test_epaxos_sizes_are_the_papers() -> None:
    # Moraru et al. section 4.4: N = 3 -> 2, N = 5 -> 3, N = 7 -> 5 (F + floor((F+1)/2))
    assert [EPaxosQuorums(n).fast for n in (3, 5, 7, 9)] == [2, 3, 5, 6]
    assert [EPaxosQuorums(n, optimized=False).fast for n in (3, 5, 7)] == [2, 4, 6]
    assert [EPaxosQuorums(n).slow for n in (3, 5, 7)] == [2, 3, 4]


def test_a_configuration_that_cannot_intersect_names_the_sizes() -> None:
    with pytest.raises(QuorumError, match=r"\|Q1\| 2 \+ \|Q2\| 3 = 5 is not more than N = 5"):
        Flexible([f"n{i}" for i in range(5)], q2=3, q1=2)
    with pytest.raises(QuorumError, match=r"b, c weigh 2 >= the phase-1 weight 2 .* 3 >= the"):
        Weighted(["a", "b", "c"], {"a": 3, "b": 1, "c": 1}, t1=2, t2=3)
    Weighted(["a"], {"a": 3}, t1=2, t2=1)  # 2 + 1 is not more than 3, yet one voter is safe
    with pytest.raises(QuorumError, match="no region for voter"):
        Hierarchical(["a", "b"], {"a": "eu"})


def test_strategies_parse_from_their_settings() -> None:
    five = [f"n{i}" for i in range(1, 6)]
    q = parse_strategy("flexible:q2=2")(five)
    assert isinstance(q, Flexible)
    assert (q.q1, q.q2) == (4, 2)
    assert q.phase2({"n1", "n5"})
    assert not q.phase1({"n1", "n2", "n3"})
    w = parse_strategy("weighted:n1=2,q1=3,q2=2")(["n1", "n2", "n3"])
    assert w.phase2({"n1"})
    assert not w.phase2({"n2"})
    assert not w.phase1({"n1"})  # 2 of the 3 phase 1 needs
    assert w.phase1({"n1", "n2"})
    g = parse_strategy("grid:cols=2")(["a", "b", "c", "d"])
    assert g.phase1({"a", "b"})
    assert g.phase2({"a", "c"})
    assert not g.phase2({"a", "b"})
    h = parse_strategy("hierarchical:a=x,b=x,c=y,d=y,e=z")(["a", "b", "c", "d", "e"])
    assert h.phase1({"a", "b", "e"})
    assert not h.phase1({"a", "c", "e"})  # x and y each lack a majority
    for bad, what in (
        ("flexible", "needs q2"),
        ("flexible:q2=x", "integer"),
        ("grid", "needs cols"),
        ("paxos-ish", "unknown kind"),
        ("flexible:q2=2,q3=1", "unknown parameter"),
        ("flexible:q2", "not key=value"),
    ):
        with pytest.raises(QuorumError, match=what):
            parse_strategy(bad)
    with pytest.raises(QuorumError, match="is not more than N = 5"):
        parse_strategy("flexible:q2=2,q1=3")(five)
