"""Capacity forecasts: ETS beats the seasonal-naive baseline where the truth is known, its
intervals cover the truth, and short or missing history says why it cannot forecast."""

from __future__ import annotations

import math
import random

import pytest

from novacron_core.observe import forecast as fc

DAY = 86_400.0


def synthetic(days: int, seed: int = 7) -> list[float]:
    """Growth with a weekly cycle and noise: what a region's VM count looks like."""
    rng = random.Random(seed)
    return [
        1000 + 4.0 * d + 60 * math.sin(2 * math.pi * d / 7) + rng.gauss(0, 8) for d in range(days)
    ]


def test_ets_beats_seasonal_naive_on_a_growing_weekly_series() -> None:
    y = synthetic(180)
    train, test = y[:150], y[150:]
    mean, lower, upper, method = fc.fit_predict(train, len(test))
    naive = fc.seasonal_naive(train, len(test), 7)
    assert method == "ETS(A,Ad,A7)"
    assert fc.mape(test, mean) < fc.mape(test, naive)
    inside = sum(lo <= a <= hi for a, lo, hi in zip(test, lower, upper, strict=True))
    assert inside / len(test) >= 0.8  # 95 % intervals, give or take a damped trend


def test_forecast_from_timestamped_samples_with_gaps() -> None:
    y = synthetic(120)
    samples = [(d * DAY + h * 3600.0, v) for d, v in enumerate(y) for h in (1, 13)]
    samples = [s for s in samples if not 50 * DAY <= s[0] < 53 * DAY]  # 3 days missing
    f = fc.forecast("vms", samples)
    assert f.history_days == 120
    assert [p.days_ahead for p in f.points] == [30, 60, 90]
    for p in f.points:
        assert p.lower < p.mean < p.upper
    assert f.points[0].mean > y[-1]  # it grows
    body = f.as_dict()
    assert body["forecast"][2]["days_ahead"] == 90
    assert body["interval"] == 0.95


def test_daily_aggregates_and_interpolates() -> None:
    assert fc.daily([(0, 1.0), (3600, 3.0), (3 * DAY, 8.0)]) == [2.0, 4.0, 6.0, 8.0]
    assert fc.daily([(0, float("nan"))]) == []


def test_too_little_history_is_refused_with_the_reason() -> None:
    with pytest.raises(fc.ForecastUnavailable, match="at least 14"):
        fc.forecast("vms", [(d * DAY, 1.0) for d in range(5)])
    with pytest.raises(fc.ForecastUnavailable, match="no history"):
        fc.forecast("vms", [])


def test_mape_and_seasonal_naive() -> None:
    assert fc.mape([100, 200], [110, 180]) == pytest.approx(10.0)
    assert fc.seasonal_naive([1, 2, 3, 4], 5, 2) == [3, 4, 3, 4, 3]
    with pytest.raises(ValueError, match="undefined"):
        fc.mape([0, 0], [1, 1])
