"""Capacity forecasts (30/60/90 days ahead) with prediction intervals, from stored history.

The method is statsmodels' ETS (error-trend-seasonal exponential smoothing, the state-space
form of Holt-Winters): additive errors, a damped additive trend (capacity grows, but an
undamped trend extrapolated 90 days overshoots), and additive weekly seasonality when the
history holds at least two full seasons. Prediction intervals come from the model's
state-space variance. Points are first put on a regular daily grid (the mean of each day);
days without data are interpolated, never invented at the ends.

statsmodels is an optional dependency (``pip install 'novacron[observe]'``): without it
:func:`forecast` raises :class:`ForecastUnavailable` saying so.

How well this does against the seasonal-naive baseline on public series:
``python -m benchmarks observe`` (docs/observability.md).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

DAY = 86_400.0
HORIZONS = (30, 60, 90)


class ForecastUnavailable(Exception):
    """A forecast cannot be made (too little history, or statsmodels missing); says why."""


@dataclass(frozen=True, slots=True)
class Point:
    days_ahead: int
    mean: float
    lower: float
    upper: float


@dataclass(frozen=True, slots=True)
class Forecast:
    metric: str
    method: str
    history_days: int
    level: float  # prediction interval coverage, e.g. 0.95
    points: tuple[Point, ...]
    last_value: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "method": self.method,
            "history_days": self.history_days,
            "interval": self.level,
            "last_value": self.last_value,
            "forecast": [
                {
                    "days_ahead": p.days_ahead,
                    "mean": p.mean,
                    "lower": p.lower,
                    "upper": p.upper,
                }
                for p in self.points
            ],
        }


def daily(samples: Sequence[tuple[float, float]]) -> list[float]:
    """(unix time, value) samples -> one mean per day, gaps interpolated linearly."""
    by_day: dict[int, list[float]] = {}
    for t, v in samples:
        if math.isfinite(v):
            by_day.setdefault(int(t // DAY), []).append(v)
    if not by_day:
        return []
    first, last = min(by_day), max(by_day)
    means = {d: sum(vs) / len(vs) for d, vs in by_day.items()}
    out: list[float] = []
    prev_day = first
    for d in range(first, last + 1):
        if d in means:
            gap = d - prev_day
            if gap > 1:  # fill the days between prev_day and d
                a, b = means[prev_day], means[d]
                out.extend(a + (b - a) * k / gap for k in range(1, gap))
            out.append(means[d])
            prev_day = d
    return out


def fit_predict(
    y: Sequence[float], steps: int, season: int | None = 7, level: float = 0.95
) -> tuple[list[float], list[float], list[float], str]:
    """Fit ETS to ``y`` (a regular series) and predict ``steps`` ahead:
    (mean, lower, upper, method description)."""
    try:
        import pandas as pd
        from statsmodels.tsa.exponential_smoothing.ets import ETSModel
    except ImportError:
        raise ForecastUnavailable(
            "forecasts need statsmodels: pip install 'novacron[observe]'"
        ) from None
    if len(y) < 14:
        raise ForecastUnavailable(f"{len(y)} points of history; at least 14 are needed")
    # a Series, not an ndarray: statsmodels 0.15's prediction results need an index
    arr = pd.Series([float(v) for v in y])
    seasonal = season is not None and season > 1 and len(arr) >= 2 * season + 2
    kwargs: dict[str, Any] = {"error": "add", "trend": "add", "damped_trend": True}
    if seasonal:
        kwargs.update(seasonal="add", seasonal_periods=season)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence chatter on short series
        fit = ETSModel(arr, **kwargs).fit(disp=False, maxiter=2000)
        pred = fit.get_prediction(start=len(arr), end=len(arr) + steps - 1)
        frame = pred.summary_frame(alpha=1.0 - level)
    method = "ETS(A,Ad," + (f"A{season})" if seasonal else "N)")
    return (
        [float(v) for v in frame["mean"]],
        [float(v) for v in frame["pi_lower"]],
        [float(v) for v in frame["pi_upper"]],
        method,
    )


def forecast(
    metric: str,
    samples: Sequence[tuple[float, float]],
    horizons: Sequence[int] = HORIZONS,
    level: float = 0.95,
) -> Forecast:
    """Forecast ``metric`` ``horizons`` days past its last sample."""
    y = daily(samples)
    if not y:
        raise ForecastUnavailable(f"no history for {metric}")
    steps = max(horizons)
    mean, lower, upper, method = fit_predict(y, steps, season=7, level=level)
    points = tuple(Point(h, mean[h - 1], lower[h - 1], upper[h - 1]) for h in sorted(horizons))
    return Forecast(metric, method, len(y), level, points, y[-1])


def seasonal_naive(y: Sequence[float], steps: int, season: int) -> list[float]:
    """The baseline: each future day repeats the same day of the last observed season."""
    last = list(y[-season:])
    return [last[h % season] for h in range(steps)]


def mape(actual: Sequence[float], predicted: Sequence[float]) -> float:
    """Mean absolute percentage error, in percent (points where actual is 0 are skipped)."""
    pairs = [(a, p) for a, p in zip(actual, predicted, strict=True) if a != 0]
    if not pairs:
        raise ValueError("MAPE is undefined: every actual value is 0")
    return 100.0 * sum(abs((a - p) / a) for a, p in pairs) / len(pairs)
