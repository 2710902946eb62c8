"""Runs every scenario in testdata/ (see scenario.py for the step language)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.consensus.scenario import Scenario

DATA = Path(__file__).parent / "testdata"


@pytest.mark.parametrize("path", sorted(DATA.glob("*.txt")), ids=lambda p: p.stem)
def test_scenario(path: Path) -> None:
    Scenario().run(path)
