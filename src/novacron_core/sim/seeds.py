"""Seeds for simulation tests, and how a failure tells you to replay it.

``NOVACRON_SEED=N`` runs exactly seed N (replay); ``NOVACRON_SIM_SCHEDULES=K`` overrides how
many seeds a test sweeps (``make soak`` raises it).
"""

from __future__ import annotations

import os


def sim_seeds(default_count: int, base: int = 0) -> list[int]:
    one = os.environ.get("NOVACRON_SEED")
    if one:
        return [int(one)]
    count = int(os.environ.get("NOVACRON_SIM_SCHEDULES", default_count))
    return list(range(base, base + count))


def replay_hint(seed: int, test: str = "") -> str:
    where = f" -k {test}" if test else ""
    return f"replay with: NOVACRON_SEED={seed} .venv/bin/pytest tests{where}"
