"""The Numenta Anomaly Benchmark's scoring, reimplemented from its documentation and paper
(Lavin & Ahmad 2015; NAB v1.1's sweeper), and the detectors we compare on it.

Scoring, per data file:
- the first 15 % of rows (at most 750) are probationary: a detector learns, nothing counts;
- each labelled window that a detection falls in scores the scaled sigmoid of the *first*
  detection's position in it, ``2 / (1 + exp(5 x)) - 1`` with x = -(right edge - i + 1) /
  width (an early detection is worth about tpWeight, one at the right edge about 0), and
  is divided by the sigmoid at the left edge so the earliest detection is worth exactly
  tpWeight; a window with no detection costs fnWeight;
- each detection outside every window costs fpWeight x the scaled sigmoid of its distance
  past the previous window's right edge in window widths (a detection right after a
  window costs little, one 3+ widths later fpWeight; one before any window fpWeight).
Normalized over a corpus: 100 x (score - null) / (perfect - null), where the null detector
(never detects) scores -fnWeight per window and the perfect one tpWeight per window.

A detection is a row whose anomaly score is at or above the detector's threshold; as in
NAB, each detector's single threshold is the one that maximizes its corpus score (the same
for every file: never per series).

The corpus is read from ``$NOVACRON_NAB_DIR`` or ``/work/shared/data/nab`` (realKnownCause
only); nothing of it is copied into the repository.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

DEFAULT_DIRS = (os.environ.get("NOVACRON_NAB_DIR", ""), "/work/shared/data/nab")
PROBATION_PERCENT = 0.15


def nab_dir() -> Path | None:
    for d in DEFAULT_DIRS:
        if d and (Path(d) / "labels" / "combined_windows.json").exists():
            return Path(d)
    return None


def _ts(s: str) -> datetime:
    return datetime.fromisoformat(s.strip().split(".")[0])


@dataclass
class DataFile:
    name: str  # e.g. realKnownCause/nyc_taxi.csv
    timestamps: list[datetime]
    values: np.ndarray
    windows: list[tuple[int, int]]  # (first row, last row) inside each window
    labels: list[int]  # rows of the labelled anomaly points (the windows' centres)

    @property
    def probation(self) -> int:
        n = len(self.values)
        return int(min(math.floor(PROBATION_PERCENT * n), PROBATION_PERCENT * 5000))


def load_corpus(root: Path) -> list[DataFile]:
    windows = json.loads((root / "labels" / "combined_windows.json").read_text())
    labels_path = root / "labels" / "combined_labels.json"
    points = json.loads(labels_path.read_text()) if labels_path.exists() else {}
    out = []
    for name in sorted(windows):
        path = root / "data" / name
        if not path.exists():
            continue
        with open(path) as f:
            rows = list(csv.DictReader(f))
        ts = [_ts(r["timestamp"]) for r in rows]
        vals = np.array([float(r["value"]) for r in rows])
        idx = []
        for start, end in windows[name]:
            a, b = _ts(start), _ts(end)
            inside = [i for i, t in enumerate(ts) if a <= t <= b]
            if inside:
                idx.append((inside[0], inside[-1]))
        pts = []
        for p in points.get(name, []):
            t = _ts(p)
            pts.append(min(range(len(ts)), key=lambda i, t=t: abs((ts[i] - t).total_seconds())))
        out.append(DataFile(name, ts, vals, idx, pts))
    return out


# ---------------------------------------------------------------------- scoring


def scaled_sigmoid(x: float) -> float:
    if x >= 3.0:
        return -1.0
    return 2.0 / (1.0 + math.exp(5.0 * x)) - 1.0


@dataclass(frozen=True)
class Profile:
    tp: float = 1.0
    fp: float = 0.11
    fn: float = 1.0


STANDARD = Profile()
PROFILES = {
    "standard": STANDARD,
    "reward_low_FP_rate": Profile(fp=0.22),
    "reward_low_FN_rate": Profile(fn=2.0),
}


@dataclass
class Weights:
    """Per-row weights of one file: what a detection there is worth."""

    weight: np.ndarray  # the sweep score of a detection at the row
    window: np.ndarray  # window number of the row, -1 outside windows
    scored: np.ndarray  # False for probationary rows
    n_windows: int  # windows with at least one scored row


def weights(f: DataFile, profile: Profile) -> Weights:
    n = len(f.values)
    w = np.zeros(n)
    win = np.full(n, -1, dtype=int)
    max_tp = scaled_sigmoid(-1.0)
    prev_right: int | None = None
    prev_width = 0.0
    k = 0
    for i in range(n):
        if k < len(f.windows) and f.windows[k][0] <= i <= f.windows[k][1]:
            left, right = f.windows[k]
            width = float(right - left + 1)
            w[i] = scaled_sigmoid(-(right - i + 1) / width) * profile.tp / max_tp
            win[i] = k
            if i == right:
                prev_right, prev_width = right, width
                k += 1
        else:
            if prev_right is None:
                pos = 3.0
            else:
                pos = abs(prev_right - i) / (prev_width - 1) if prev_width > 1 else 3.0
            w[i] = scaled_sigmoid(pos) * profile.fp
    scored = np.arange(n) >= f.probation
    n_windows = len({int(x) for x in win[scored] if x >= 0})
    return Weights(w, win, scored, n_windows)


@dataclass
class FileScore:
    score: float
    tp: int  # detections inside windows
    fp: int  # detections outside windows
    windows: int
    detected: int  # windows with a detection
    first: list[int]  # row of the first detection in each detected window


def score_file(det: np.ndarray, ww: Weights, profile: Profile) -> FileScore:
    d = det & ww.scored
    inside = d & (ww.window >= 0)
    outside = d & (ww.window < 0)
    score = float(ww.weight[outside].sum())
    windows_seen = sorted({int(x) for x in ww.window[ww.scored] if x >= 0})
    detected, first = 0, []
    for k in windows_seen:
        rows = np.nonzero(inside & (ww.window == k))[0]
        if len(rows):
            detected += 1
            first.append(int(rows[0]))
            score += float(ww.weight[rows].max())
        else:
            score -= profile.fn
    return FileScore(
        score, int(inside.sum()), int(outside.sum()), len(windows_seen), detected, first
    )


def normalized(total: float, n_windows: int, profile: Profile) -> float:
    null, perfect = -profile.fn * n_windows, profile.tp * n_windows
    return 100.0 * (total - null) / (perfect - null)


@dataclass
class Result:
    detector: str
    threshold: float
    raw: float
    score: float  # normalized, over the files scored here
    precision: float  # detections inside windows / all detections
    recall: float  # windows detected / windows
    detections: int
    lag_minutes_median: float | None  # first detection - labelled anomaly, detected windows
    per_file: dict[str, FileScore]


def evaluate(
    corpus: Sequence[DataFile],
    scores: dict[str, np.ndarray],
    threshold: float,
    profile: Profile = STANDARD,
    name: str = "",
) -> Result:
    per_file, total, n_windows = {}, 0.0, 0
    tp = fp = det = windows = 0
    lags: list[float] = []
    for f in corpus:
        ww = weights(f, profile)
        fs = score_file(scores[f.name] >= threshold, ww, profile)
        per_file[f.name] = fs
        total += fs.score
        n_windows += len(f.windows)
        tp, fp, det, windows = tp + fs.tp, fp + fs.fp, det + fs.detected, windows + fs.windows
        for row in fs.first:
            k = int(ww.window[row])
            label = [p for p in f.labels if f.windows[k][0] <= p <= f.windows[k][1]]
            if label:
                lags.append((f.timestamps[row] - f.timestamps[label[0]]).total_seconds() / 60)
    return Result(
        name,
        threshold,
        total,
        normalized(total, n_windows, profile),
        tp / (tp + fp) if tp + fp else 0.0,
        det / windows if windows else 0.0,
        tp + fp,
        float(np.median(lags)) if lags else None,
        per_file,
    )


def best_threshold(
    corpus: Sequence[DataFile],
    scores: dict[str, np.ndarray],
    profile: Profile = STANDARD,
    name: str = "",
    candidates: int = 400,
) -> Result:
    """NAB's threshold optimization: the one threshold maximizing the corpus score."""
    allv = np.concatenate([scores[f.name][f.probation :] for f in corpus])
    qs = np.unique(np.quantile(allv, np.linspace(0.5, 1.0, candidates)))
    qs = np.unique(np.concatenate([qs, [allv.max()]]))
    best: Result | None = None
    for t in qs:
        r = evaluate(corpus, scores, float(t), profile, name)
        if best is None or r.raw > best.raw:
            best = r
    assert best is not None
    return best


# ---------------------------------------------------------------------- detectors


def windowed_gaussian(values: np.ndarray, window: int = 6400, step: int = 100) -> np.ndarray:
    """NAB's published ``windowedGaussian`` detector, as NAB ran it for its scoreboard: the
    score is 1 - Q(|z|) of the value against the mean and standard deviation of the
    previous values (up to ``window`` of them; once full, the window slides every ``step``
    values). NAB wrote scores to its results files with Python 2's ``str`` (12 significant
    digits) and scored those: so do we, or a 0.9999999999996 would not count as the 1.0
    it was scored as."""
    out = np.zeros(len(values))
    lo, hi = 0, 0  # the window is values[lo:hi]
    mean, std = 0.0, 1.0
    for i in range(len(values)):
        x = float(values[i])
        if hi > lo:
            xx = x if x >= mean else 2 * mean - x
            out[i] = float("%.12g" % (1.0 - 0.5 * math.erfc(((xx - mean) / std) / math.sqrt(2))))
        if hi - lo < window:
            hi += 1
        elif i + 1 - hi == step:  # slide by a whole step at once
            lo, hi = lo + step, i + 1
        else:
            continue
        data = values[lo:hi]
        mean, std = float(np.mean(data)), float(np.std(data)) or 0.000001
    return out


def ours(values: np.ndarray) -> np.ndarray:
    """Our RobustDetector, as the node runs it: 1.0 where it raises an alert (its own
    threshold and refractory period), otherwise its score scaled below 1."""
    from novacron_core.observe.anomaly import RobustDetector

    det = RobustDetector()
    out = np.zeros(len(values))
    for i, x in enumerate(values):
        v = det.update(float(x))
        out[i] = 1.0 if v.alert else 0.99 * v.score
    return out


def ours_raw(values: np.ndarray) -> np.ndarray:
    """Our detector's continuous score (no alerting, no refractory period)."""
    from novacron_core.observe.anomaly import RobustDetector

    det = RobustDetector()
    return np.array([det.update(float(x)).score for x in values])


def fixed_threshold(values: np.ndarray, probation: int) -> np.ndarray:
    """A static alert threshold set at deploy time: 1.0 where the value leaves the mean
    +/- 3 standard deviations of the probationary period (what a hand-written alert rule
    does), else 0."""
    base = values[: max(probation, 2)]
    mu, sd = float(base.mean()), float(base.std()) or 1e-9
    return (np.abs(values - mu) > 3 * sd).astype(float)


def river_hst(values: np.ndarray, seed: int = 42) -> np.ndarray:
    """river's HalfSpaceTrees (an online isolation forest) on the value and its change,
    min-max scaled online, as river's documentation pairs them."""
    from river import anomaly, compose, preprocessing

    model = compose.Pipeline(
        preprocessing.MinMaxScaler(),
        anomaly.HalfSpaceTrees(n_trees=25, height=8, window_size=250, seed=seed),
    )
    out = np.zeros(len(values))
    prev = float(values[0])
    for i, x in enumerate(values):
        feats = {"x": float(x), "dx": float(x) - prev}
        prev = float(x)
        out[i] = model.score_one(feats)
        model.learn_one(feats)
    return out


DETECTORS: dict[str, Callable[[DataFile], np.ndarray]] = {
    "novacron RobustDetector (alerts)": lambda f: ours(f.values),
    "novacron RobustDetector (raw score)": lambda f: ours_raw(f.values),
    "fixed threshold (probation mean +/- 3 sd)": lambda f: fixed_threshold(f.values, f.probation),
    "river HalfSpaceTrees": lambda f: river_hst(f.values),
    "NAB windowedGaussian (rerun)": lambda f: windowed_gaussian(f.values),
}
