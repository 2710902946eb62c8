"""Editing workloads for the sequence CRDT: the recorded traces, and a generated one.

Traces (``*.json.gz``, see the README beside them) live in ``shared/data/editing-traces`` next
to the repository (found by walking up from it, so that worktrees find it too) or wherever
``NOVACRON_TRACES`` points. :func:`generated` builds, at run time and from a seed, a workload
in the same shape that the recorded ones lack: pastes of 1-5,000 characters, block deletes
and replacements mixed with typing, backspacing and cursor jumps.
"""

from __future__ import annotations

import gzip
import json
import math
import os
import random
from pathlib import Path
from typing import Any

Patch = tuple[int, int, str]  # (position, characters deleted, text inserted)


def traces_dir() -> Path:
    env = os.environ.get("NOVACRON_TRACES")
    if env:
        return Path(env)
    here = Path(__file__).resolve()
    for parent in here.parents:
        candidate = parent / "shared" / "data" / "editing-traces"
        if candidate.is_dir():
            return candidate
    return here.parents[1].parent / "shared" / "data" / "editing-traces"  # (absent)


def trace_names() -> list[str]:
    d = traces_dir()
    if not d.is_dir():
        return []
    return sorted(p.name.removesuffix(".json.gz") for p in d.glob("*.json.gz"))


def load(name: str) -> dict[str, Any]:
    with gzip.open(traces_dir() / f"{name}.json.gz") as f:
        data: dict[str, Any] = json.load(f)
    return data


def patches(trace: dict[str, Any]) -> list[Patch]:
    """Every patch of a sequential trace, in order."""
    return [(p[0], p[1], p[2]) for t in trace["txns"] for p in t["patches"]]


# ---------------------------------------------------------------- generated workload

_CORPUS = (
    "the of and to in is that for it as was with be by on not he this are or his from at "
    "which but have an they you were her she there been one all we their has would when if "
    "so no will more can said who out up what about into than them some could him time only "
    "lambda return def class import self value node region replica merge delta state sync"
)
_WORDS = _CORPUS.split()


def _text(rng: random.Random, n: int) -> str:
    out: list[str] = []
    size = 0
    while size < n:
        w = rng.choice(_WORDS)
        if rng.random() < 0.08:
            w += rng.choice(".,;:\n")
        out.append(w)
        size += len(w) + 1
    return " ".join(out)[:n]


def _size(rng: random.Random, top: int = 5000) -> int:
    """Log-uniform in [1, top]: many small pastes and deletes, a few big ones."""
    return min(top, int(math.exp(rng.uniform(0, math.log(top + 1)))))


def generated(seed: int = 1, ops: int = 100_000) -> dict[str, Any]:
    """A sequential trace (``txns`` of ``patches``, ``endContent``) of about ``ops`` patches:
    typing bursts at a cursor (most patches), backspacing, cursor jumps, pastes of 1-5,000
    characters, block deletes of 1-5,000 and replacements (a block replaced by other text in
    one patch). The document stays between about 2,000 and 60,000 characters."""
    rng = random.Random(seed)
    doc = ""
    txns: list[dict[str, Any]] = []
    cursor = 0

    def emit(pos: int, dele: int, ins: str) -> None:
        txns.append({"patches": [[pos, dele, ins]]})

    while len(txns) < ops:
        r = rng.random()
        n = len(doc)
        if r < 0.15 or n < 2_000:  # paste
            text = _text(rng, _size(rng))
            cursor = rng.randint(0, n)
            emit(cursor, 0, text)
            doc = doc[:cursor] + text + doc[cursor:]
            cursor += len(text)
        elif r < 0.27 or (n > 60_000 and r < 0.6):  # block delete
            k = min(_size(rng), n)
            cursor = rng.randint(0, n - k)
            emit(cursor, k, "")
            doc = doc[:cursor] + doc[cursor + k :]
        elif r < 0.35:  # replacement
            k = min(_size(rng, 500), n)
            pos = rng.randint(0, n - k)
            text = _text(rng, _size(rng, 1000))
            emit(pos, k, text)
            doc = doc[:pos] + text + doc[pos + k :]
            cursor = pos + len(text)
        elif r < 0.45:  # jump somewhere, near or far
            cursor = (
                rng.randint(0, n)
                if rng.random() < 0.3
                else min(n, max(0, cursor + rng.randint(-300, 300)))
            )
        elif r < 0.6:  # backspace a few characters
            k = min(rng.randint(1, 8), cursor)
            for _ in range(k):
                cursor -= 1
                emit(cursor, 1, "")
            doc = doc[:cursor] + doc[cursor + k :]
        else:  # type a few words, one character per patch
            text = _text(rng, rng.randint(3, 30))
            for i, ch in enumerate(text):
                emit(cursor + i, 0, ch)
            doc = doc[:cursor] + text + doc[cursor:]
            cursor += len(text)
    return {"startContent": "", "endContent": doc, "txns": txns, "kind": "generated"}
