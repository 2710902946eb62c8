"""The demo's checks that need more than a glance: each one can fail, and tests show it does.

- :func:`kept_log`: a follower restarted after kill -9 read its log back from disk. It looks
  at what the node says it recovered at start (``/v1/cluster`` ``recovered``), not at its log
  when it first answers: by then it may have caught up from the leader, which a node started
  on an empty data dir does too.
- :func:`rtt_misses`: TCP connect times between region namespaces against the RTT matrix. It
  judges the *minimum* of several samples: load only ever adds time to a sample, so the
  fastest one is the closest to the network's own delay, while a missing delay shows as a
  minimum far below the matrix however many samples are taken.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

Pair = tuple[str, str]


def kept_log(before: Mapping[str, Any], restarted: Mapping[str, Any]) -> bool:
    """``before``: the node's ``/v1/cluster`` before the crash; ``restarted``: its first
    answer after the restart. True when what it read back from disk at start reaches the
    commit index it had before the crash."""
    recovered = restarted.get("recovered")
    commit = int(before.get("commit", 0))
    if not isinstance(recovered, Mapping) or commit <= 0:
        return False
    return int(recovered.get("last_index", -1)) >= commit


def rtt_tolerance_ms(matrix_ms: float) -> float:
    return max(5.0, 0.1 * matrix_ms)


def rtt_misses(
    samples_ms: Mapping[Pair, Sequence[float]], matrix_ms: Mapping[Pair, float]
) -> dict[Pair, float]:
    """The pairs whose fastest sample is not within 10 % (or 5 ms) of the matrix, with that
    sample; an empty dict when every pair matches."""
    out: dict[Pair, float] = {}
    for pair, samples in samples_ms.items():
        best = min(samples) if samples else float("inf")
        if abs(best - matrix_ms[pair]) > rtt_tolerance_ms(matrix_ms[pair]):
            out[pair] = best
    return out
