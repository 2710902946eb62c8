"""Shared test options. ``--seed N`` replays one simulation seed (same as NOVACRON_SEED=N)."""

from __future__ import annotations

import os

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--seed", action="store", default=None, help="replay one simulation seed")


def pytest_configure(config: pytest.Config) -> None:
    seed = config.getoption("--seed")
    if seed is not None:
        os.environ["NOVACRON_SEED"] = str(seed)
