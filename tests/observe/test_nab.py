"""NAB's scoring, checked against NAB's published results and against hand-worked cases.

The published figures below are NAB's own (github.com/numenta/NAB, results/windowedGaussian/
windowedGaussian_standard_scores.csv, and results/final_results.json): rerunning NAB's
windowedGaussian detector on the realKnownCause files and scoring it with our
implementation must give each file's published standard-profile score and counts.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from benchmarks import nab

# file -> (standard score, TP rows, FP rows), windowedGaussian at its threshold 1.0
PUBLISHED_WINDOWED_GAUSSIAN = {
    "realKnownCause/ambient_temperature_system_failure.csv": (-2.0, 0, 0),
    "realKnownCause/cpu_utilization_asg_misconfiguration.csv": (-1.11, 0, 1),
    "realKnownCause/ec2_request_latency_system_failure.csv": (2.02150685678, 8, 0),
    "realKnownCause/machine_temperature_system_failure.csv": (-4.0, 0, 0),
    "realKnownCause/nyc_taxi.csv": (-5.0, 0, 0),
    "realKnownCause/rogue_agent_key_hold.csv": (-2.44, 0, 4),
    "realKnownCause/rogue_agent_key_updown.csv": (-1.3964908955, 1, 8),
}
# its corpus-wide raw standard score (58 files, 116 windows) in the same table
PUBLISHED_WG_TOTAL, CORPUS_WINDOWS = -24.0131054891, 116


@pytest.fixture(scope="module")
def corpus() -> list[nab.DataFile]:
    root = nab.nab_dir()
    if root is None:
        pytest.skip("NAB data absent (/work/shared/data/nab or $NOVACRON_NAB_DIR)")
    return nab.load_corpus(root)


def test_rescoring_nabs_windowed_gaussian_reproduces_its_published_scores(
    corpus: list[nab.DataFile],
) -> None:
    scores = {f.name: nab.windowed_gaussian(f.values) for f in corpus}
    result = nab.evaluate(corpus, scores, 1.0)
    assert set(result.per_file) == set(PUBLISHED_WINDOWED_GAUSSIAN)
    for name, (score, tp, fp) in PUBLISHED_WINDOWED_GAUSSIAN.items():
        got = result.per_file[name]
        assert got.score == pytest.approx(score, abs=1e-10), name
        assert (got.tp, got.fp) == (tp, fp), name


def test_normalization_reproduces_the_published_scoreboard(corpus: list[nab.DataFile]) -> None:
    """final_results.json's windowedGaussian standard score is the corpus total normalized
    between the null detector (-1 per window) and the perfect one (+1 per window)."""
    root = nab.nab_dir()
    assert root is not None
    board = json.loads((root / "results" / "final_results.json").read_text())
    got = nab.normalized(PUBLISHED_WG_TOTAL, CORPUS_WINDOWS, nab.STANDARD)
    assert got == pytest.approx(board["windowedGaussian"]["standard"], abs=1e-6)
    null = nab.normalized(-CORPUS_WINDOWS, CORPUS_WINDOWS, nab.STANDARD)
    assert null == board["null"]["standard"]


def test_null_and_perfect_detectors_score_0_and_100(corpus: list[nab.DataFile]) -> None:
    null = {f.name: np.zeros(len(f.values)) for f in corpus}
    assert nab.evaluate(corpus, null, 0.5).score == pytest.approx(0.0)
    perfect = {}
    for f in corpus:
        s = np.zeros(len(f.values))
        for left, _ in f.windows:
            s[left] = 1.0  # the earliest possible detection in each window
        perfect[f.name] = s
    r = nab.evaluate(corpus, perfect, 0.5)
    assert r.score == pytest.approx(100.0)
    assert r.recall == 1.0
    assert r.precision == 1.0


def _file(n: int, windows: list[tuple[int, int]]) -> nab.DataFile:
    from datetime import datetime, timedelta

    t0 = datetime(2024, 1, 1)
    return nab.DataFile(
        "f", [t0 + timedelta(minutes=5 * i) for i in range(n)], np.zeros(n), windows, []
    )


def test_hand_worked_weights() -> None:
    f = _file(1000, [(500, 599)])  # probation: 150 rows
    w = nab.weights(f, nab.STANDARD)
    assert w.weight[500] == pytest.approx(1.0)  # the window's first row: full credit
    assert w.weight[599] == pytest.approx(nab.scaled_sigmoid(-1 / 100) / nab.scaled_sigmoid(-1))
    assert w.weight[300] == pytest.approx(-0.11)  # before any window: a full FP
    # right after the window an FP costs little, 3+ widths later the full fpWeight
    assert -0.11 < w.weight[600] < 0
    assert w.weight[600 + 3 * 99] == pytest.approx(-0.11)
    det = np.zeros(1000, dtype=bool)
    det[[100, 300, 550]] = True  # 100 is probationary: ignored
    fs = nab.score_file(det, w, nab.STANDARD)
    assert fs.tp == 1
    assert fs.fp == 1
    assert fs.score == pytest.approx(w.weight[550] - 0.11)
