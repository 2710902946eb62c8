"""The regional health score against a reference model of its documented definition."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from novacron_core.observe.health import (
    COMPONENTS,
    HealthInputs,
    HealthPolicy,
    HealthWindow,
    Ramp,
    score,
)

P = HealthPolicy()


def reference(i: HealthInputs) -> float:
    """docs/observability.md, written out plainly."""

    def ramp(v: float, good: float, bad: float) -> float:
        return 1.0 if v <= good else 0.0 if v >= bad else (bad - v) / (bad - good)

    parts: list[tuple[float, float]] = []  # (weight, score)
    lead = (1.0 if i.elections is None else ramp(i.elections, 1, 5)) if i.leader_present else 0.0
    parts.append((30, lead))
    for value, w, good, bad in (
        (i.lag_entries, 20, 100, 5000),
        (i.error_ratio, 25, 0.001, 0.05),
        (i.links_down_ratio, 15, 0.0, 0.5),
        (i.conflicts_per_s, 10, 0.1, 10.0),
    ):
        if value is not None:
            parts.append((w, ramp(value, good, bad)))
    total = 100 * sum(w * s for w, s in parts) / sum(w for w, _ in parts)
    if not i.leader_present:
        total = min(total, 25.0)
    return total


opt = st.none() | st.floats(0, 20_000, allow_nan=False)
ratio = st.none() | st.floats(0, 1, allow_nan=False)


@given(st.booleans(), opt, opt, ratio, ratio, st.none() | st.floats(0, 100, allow_nan=False))
def test_score_matches_the_documented_definition(
    leader: bool,
    elections: float | None,
    lag: float | None,
    errors: float | None,
    links: float | None,
    conflicts: float | None,
) -> None:
    i = HealthInputs(leader, elections, lag, errors, links, conflicts)
    got = score(i)
    assert abs(got.score - reference(i)) < 1e-9
    assert 0 <= got.score <= 100
    assert abs(sum(c.points for c in got.components) - got.score) < 1e-9 or got.capped
    assert [c.name for c in got.components] == list(COMPONENTS)


def test_a_healthy_region_scores_100_and_a_leaderless_one_is_capped() -> None:
    good = HealthInputs(True, 0, 10, 0.0, 0.0, 0.0)
    assert score(good).score == 100
    bad = score(HealthInputs(False, 0, 10, 0.0, 0.0, 0.0))
    assert bad.score == P.no_leader_cap
    assert bad.capped


def test_unmeasured_inputs_share_their_weight() -> None:
    s = score(HealthInputs(True, 0, 0, 0.0, None, None))
    weights = {c.name: c.weight for c in s.components}
    assert weights["links"] == weights["conflicts"] == 0
    assert abs(sum(weights.values()) - 100) < 1e-9
    assert s.score == pytest.approx(100)


def test_ramp() -> None:
    r = Ramp(good=1, bad=3)
    assert (r(0), r(1), r(2), r(3), r(9)) == (1.0, 1.0, 0.5, 0.0, 0.0)


def test_window_turns_counters_into_rates_and_survives_a_restart() -> None:
    w = HealthWindow(window_s=60)
    w.observe(0, leader_present=True, elections=5, requests=100, errors=0, lag_entries=0,
              links_down_ratio=0.0)  # fmt: skip
    w.observe(30, leader_present=True, elections=7, requests=300, errors=10, lag_entries=50,
              links_down_ratio=0.5)  # fmt: skip
    i = w.inputs()
    assert i.elections == 2
    assert i.error_ratio == 10 / 200
    assert i.lag_entries == 50
    # 2 minutes later the first samples have left the window
    w.observe(150, leader_present=True, elections=7, requests=400, errors=10, lag_entries=0,
              links_down_ratio=0.0)  # fmt: skip
    w.observe(160, leader_present=True, elections=7, requests=500, errors=10, lag_entries=0,
              links_down_ratio=0.0)  # fmt: skip
    assert w.inputs().elections == 0
    assert w.inputs().error_ratio == 0.0
    # a counter going backwards is a restart: the window starts over, no negative rates
    w.observe(170, leader_present=True, elections=0, requests=3, errors=0, lag_entries=0,
              links_down_ratio=0.0)  # fmt: skip
    assert w.inputs().elections == 0
    assert w.inputs().error_ratio is None
