"""Online anomaly detection on a node's streams (latency, replication lag, error rate).

:class:`RobustDetector` is sans-IO and O(1) per sample: a level and a scale that follow the
stream with exponential weights, robust to the very outliers they are meant to flag:

- the **level** is an EWMA whose update is winsorized (a sample more than ``clip`` scales
  away moves it as if it were only ``clip`` scales away), so a spike does not drag the
  baseline along and hide the next one;
- the **scale** is an EWMA of absolute deviations (x 1.2533: the standard deviation for
  Gaussian noise), winsorized the same way and floored at a small share of the level, so a
  flat stream does not turn its first wiggle into an infinite z-score;
- the **score** is the larger of the sample's own robust z-score and the z-score of the
  mean of the last few samples (a shift too small for one sample but sustained), mapped to
  [0, 1) by ``1 - exp(-(z / z_half)^2 ln 2)`` (0.5 at ``z_half``);
- an **alert** is raised when the score crosses ``threshold``, after which the detector
  stays quiet for ``refractory`` samples: one incident, one alert.

Its constants are the same for every stream (never tuned per series); how it fares on the
Numenta Anomaly Benchmark beside baselines is in docs/observability.md
(``python -m benchmarks observe``).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

LN2 = math.log(2.0)


@dataclass(frozen=True, slots=True)
class DetectorConfig:
    alpha: float = 0.02  # EWMA weight of the level (about 50 samples of memory)
    scale_alpha: float = 0.02  # EWMA weight of the scale
    warmup: int = 30  # samples before any score (the baseline is still forming)
    clip: float = 4.0  # winsorize updates at this many scales
    short: int = 6  # samples in the short mean that catches sustained shifts
    z_half: float = 4.0  # z-score mapped to 0.5
    threshold: float = 0.995  # alert above this score (z about 8.7 for a single sample)
    refractory: int = 200  # samples of silence after an alert
    floor: float = 0.001  # scale floor, as a share of |level| (plus an absolute epsilon)


@dataclass(frozen=True, slots=True)
class Verdict:
    score: float  # 0..1
    z: float
    alert: bool


@dataclass
class RobustDetector:
    config: DetectorConfig = field(default_factory=DetectorConfig)
    n: int = 0
    level: float = 0.0
    scale: float = 0.0
    quiet: int = 0
    _recent: deque[float] = field(default_factory=deque)

    def update(self, x: float) -> Verdict:
        c = self.config
        if not math.isfinite(x):
            return Verdict(0.0, 0.0, False)
        self.n += 1
        if self.n == 1:
            self.level, self.scale = x, 0.0
            self._recent.append(x)
            return Verdict(0.0, 0.0, False)
        scale = max(self.scale * 1.2533, c.floor * abs(self.level), 1e-9)
        resid = x - self.level
        z1 = abs(resid) / scale
        self._recent.append(x)
        if len(self._recent) > c.short:
            self._recent.popleft()
        mean = sum(self._recent) / len(self._recent)
        z_short = abs(mean - self.level) / (scale / math.sqrt(len(self._recent)))
        # the short mean's z counts at half weight: sustained, not single-sample, evidence
        z = max(z1, 0.5 * z_short)
        # robust updates: winsorize the residual before it moves level and scale
        bound = c.clip * scale
        r = max(-bound, min(bound, resid))
        warm = self.n <= c.warmup
        a = max(c.alpha, 1.0 / self.n) if warm else c.alpha
        sa = max(c.scale_alpha, 1.0 / self.n) if warm else c.scale_alpha
        self.level += a * r
        self.scale += sa * (abs(r) - self.scale)
        if warm:
            return Verdict(0.0, z, False)
        score = 1.0 - math.exp(-((z / c.z_half) ** 2) * LN2)
        if self.quiet > 0:
            self.quiet -= 1
            return Verdict(score, z, False)
        alert = score >= c.threshold
        if alert:
            self.quiet = c.refractory
        return Verdict(score, z, alert)


def score_series(values: list[float], config: DetectorConfig | None = None) -> list[Verdict]:
    """Run a fresh detector over a whole series (the benchmark's entry point)."""
    det = RobustDetector(config or DetectorConfig())
    return [det.update(v) for v in values]
