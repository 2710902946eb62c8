"""Loading the real editing traces (``<repo>/../shared/data/editing-traces``)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

TRACES = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "editing-traces"


def load(name: str) -> dict[str, Any]:
    with gzip.open(TRACES / f"{name}.json.gz") as f:
        data: dict[str, Any] = json.load(f)
    return data
