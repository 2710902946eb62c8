"""The online detector: quiet on noise, one alert per incident, robust to its own outliers."""

from __future__ import annotations

import random

from novacron_core.observe.anomaly import DetectorConfig, RobustDetector, score_series


def noise(n: int, seed: int, level: float = 100.0, sd: float = 5.0) -> list[float]:
    rng = random.Random(seed)
    return [rng.gauss(level, sd) for _ in range(n)]


def test_gaussian_noise_raises_no_alert() -> None:
    for seed in range(5):
        assert not any(v.alert for v in score_series(noise(5000, seed)))


def test_a_spike_is_flagged_at_once_and_only_once() -> None:
    xs = noise(600, 1)
    xs[400] = 400.0  # 60 standard deviations
    verdicts = score_series(xs)
    assert verdicts[400].alert
    assert [i for i, v in enumerate(verdicts) if v.alert] == [400]


def test_a_level_shift_is_flagged_once() -> None:
    xs = noise(400, 2) + noise(150, 3, level=180.0)  # +16 sd from sample 400 on
    alerts = [i for i, v in enumerate(score_series(xs)) if v.alert]
    assert alerts == [400]


def test_a_ten_sigma_step_alone_stays_below_the_alert_threshold() -> None:
    """The threshold (score 0.995) sits near z 11: a 10-sigma step scores high, no alert
    (NAB's false positives cost more than a late detection; docs/observability.md)."""
    xs = noise(400, 2) + noise(100, 3, level=150.0)
    verdicts = score_series(xs)
    assert not any(v.alert for v in verdicts)
    assert max(v.score for v in verdicts[400:]) > 0.99


def test_outliers_do_not_drag_the_baseline() -> None:
    det = RobustDetector()
    for x in noise(300, 4):
        det.update(x)
    level = det.level
    for _ in range(5):
        det.update(10_000.0)
    assert abs(det.level - level) < 5 * 5.0  # winsorized: moved by at most a few scales


def test_refractory_period_and_non_finite_input() -> None:
    cfg = DetectorConfig(refractory=50)
    xs = noise(200, 5)
    xs[100] = xs[120] = xs[160] = 500.0
    alerts = [i for i, v in enumerate(score_series(xs, cfg)) if v.alert]
    assert alerts == [100, 160]
    det = RobustDetector()
    assert det.update(float("nan")).score == 0.0
    assert det.n == 0
