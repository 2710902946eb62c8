"""The conflict benchmark's Automerge peer: the real npm package merges the benchmark's
documents and every merged field is checked; without Node or the install, the benchmark
says which command installs it instead of printing a figure."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from benchmarks.conflict import automerge_dir, automerge_merge, documents


def test_automerge_merges_the_benchmark_documents_and_every_field_checks() -> None:
    where = automerge_dir()
    if shutil.which("node") is None or not (where / "node_modules").is_dir():
        why = f"Automerge not installed in {where}: bash benchmarks/peers/automerge/build.sh"
        # .ci/run builds it wherever npm exists: there, a skip would hide a broken build
        if os.environ.get("NOVACRON_REQUIRE_TOOLS") and shutil.which("npm"):
            pytest.fail(why)
        pytest.skip(why)
    out = automerge_merge(documents(4))
    assert "error" not in out, out
    assert out["checked"] == 4
    assert out["violation_count"] == 0
    assert out["changes_per_merge"] == 2  # one change per concurrent side
    assert out["version"] == where.name
    assert out["merges_per_s"] > 0


def test_without_the_install_the_peer_names_the_build_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NOVACRON_CACHE", str(tmp_path))
    out = automerge_merge(documents(1))
    assert set(out) == {"error"}
    assert out["error"].startswith("skipped:")
    assert "bash benchmarks/peers/automerge/build.sh" in out["error"]
