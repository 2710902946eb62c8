"""A node's own SLO burn rates (what region status shows), against a plain model: over
each window, bad events / events / (1 - objective), from the newest sample at or before
the window's start."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from novacron_core.observe.slo import (
    AVAILABILITY,
    LOCAL_WINDOWS_S,
    WRITE_LATENCY,
    Counts,
    LocalBurn,
)


def test_a_burst_of_errors_burns_the_short_window_faster_than_the_long_one() -> None:
    b = LocalBurn()
    # an hour of clean traffic, 100 requests and 50 writes per 5 s
    for i in range(721):
        b.observe(5.0 * i, Counts(100 * i, 0, 50 * i, 0))
    rates = b.rates(3600.0)
    assert rates["availability"]["burn_rate"] == {"5m": 0.0, "1h": 0.0, "6h": 0.0}
    # then five minutes where 10 % fail and 2 % of writes are slow
    base = Counts(72_000, 0, 36_000, 0)
    for j in range(1, 61):
        b.observe(
            3600.0 + 5 * j, Counts(base.requests + 100 * j, 10 * j, base.writes_ok + 50 * j, j)
        )
    r = b.rates(3900.0)
    avail, lat = r["availability"]["burn_rate"], r["write_latency"]["burn_rate"]
    assert isinstance(avail, dict)
    assert isinstance(lat, dict)
    assert abs(avail["5m"] - 0.1 / 0.001) < 1e-6  # 100x the budget
    assert abs(avail["1h"] - (600 / 72_000) / 0.001) < 1e-6  # diluted by the clean hour
    assert abs(lat["5m"] - 0.02 / 0.01) < 1e-6
    assert r["availability"]["covered_s"] == {"5m": 300.0, "1h": 3600.0, "6h": 3900.0}
    assert r["availability"]["objective"] == 0.999


def test_no_requests_in_a_window_is_no_figure_not_zero() -> None:
    b = LocalBurn()
    b.observe(0.0, Counts())
    b.observe(5.0, Counts())
    assert b.rates(5.0)["availability"]["burn_rate"] == {"5m": None, "1h": None, "6h": None}
    assert LocalBurn().rates(0.0)["write_latency"]["burn_rate"] == {}


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.floats(1, 900), st.integers(0, 50), st.integers(0, 50), st.integers(0, 20)),
        min_size=1,
        max_size=80,
    ),
    st.floats(0, 900),
)
def test_matches_the_model_over_random_traffic(
    steps: list[tuple[float, int, int, int]], tail: float
) -> None:
    b = LocalBurn(horizon_s=7200.0)
    history: list[tuple[float, Counts]] = []
    t, c = 0.0, Counts()
    for dt, ok, err, w in steps:
        t += dt
        c = Counts(c.requests + ok + err, c.errors + err, c.writes_ok + w, c.writes_slow + w // 3)
        b.observe(t, c)
        history.append((t, c))
    now = t + tail
    got = b.rates(now)
    for w, secs in LOCAL_WINDOWS_S.items():
        if secs > 7200:
            continue  # beyond this tracker's horizon
        at_or_before = [h for h in history if h[0] <= now - secs]
        _t0, first = at_or_before[-1] if at_or_before else history[0]
        n, bad = c.requests - first.requests, c.errors - first.errors
        want = (bad / n) / AVAILABILITY.budget if n else None
        n2, bad2 = c.writes_ok - first.writes_ok, c.writes_slow - first.writes_slow
        want2 = (bad2 / n2) / WRITE_LATENCY.budget if n2 else None
        a = got["availability"]["burn_rate"]
        lw = got["write_latency"]["burn_rate"]
        assert isinstance(a, dict)
        assert isinstance(lw, dict)
        assert a[w] == want or abs(a[w] - want) < 1e-9, (w, a, want)
        assert lw[w] == want2 or abs(lw[w] - want2) < 1e-9, (w, lw, want2)
