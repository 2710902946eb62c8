"""``novacron demo`` end to end: real processes, the whole story, nothing left behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner

from novacron_core.cli import main

pytestmark = pytest.mark.slow


def _node_pids(octet: int) -> list[int]:
    """Pids of live processes whose command line names an address of this demo."""
    needle = f"127.{octet}.".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if b"federation_host" in cmd and needle in cmd:
            pids.append(int(entry.name))
    return pids


def _demo(tmp_path: Path, octet: int, *args: str) -> subprocess.Popen[str]:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {**os.environ, "TMPDIR": str(tmp), "PYTHONUNBUFFERED": "1"}
    argv = [sys.executable, "-m", "novacron_core.cli", "demo", f"--address-octet={octet}", *args]
    return subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )


def test_the_story_meets_every_expectation_and_leaves_nothing_behind(tmp_path: Path) -> None:
    t0 = time.monotonic()
    proc = _demo(tmp_path, 77, "--check")
    out, _ = proc.communicate(timeout=150)
    took = time.monotonic() - t0
    assert proc.returncode == 0, out
    assert "all expectations met" in out, out
    for figure in ("→ new leader", "→ next commit", "propagation", "partition healed"):
        assert figure in out, out
    assert "✗" not in out, out
    assert _node_pids(77) == []
    assert list((tmp_path / "tmp").iterdir()) == [], "the demo left its temp dir behind"
    assert took < 120, f"the story took {took:.0f}s"


def test_interactive_mode_stops_everything_on_ctrl_c(tmp_path: Path) -> None:
    proc = _demo(tmp_path, 78, "--interactive", "--regions", "2")
    try:
        _explore_then_ctrl_c(proc, tmp_path)
    finally:
        if proc.poll() is None:  # a failed expectation must not leave the federation running
            proc.kill()
            proc.communicate(timeout=30)


def _explore_then_ctrl_c(proc: subprocess.Popen[str], tmp_path: Path) -> None:
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 120
    for line in proc.stdout:
        lines.append(line)
        if "Ctrl-C stops" in line or time.monotonic() > deadline:
            break
    text = "".join(lines)
    assert "Ctrl-C stops" in text, text
    assert "http://127.78.1.1:8080/metrics" in text, text
    assert len(_node_pids(78)) == 6
    with urllib.request.urlopen("http://127.78.1.1:8080/metrics", timeout=5) as r:
        assert b"novacron_raft_commit_index" in r.read()
    with urllib.request.urlopen("http://127.78.2.1:8180/metrics", timeout=5) as r:
        assert b"novacron_sync_keys" in r.read()
    listed = CliRunner().invoke(
        main, ["vms", "list", "--federation", "--url", "http://127.78.2.1:8180", "--json"]
    )
    assert listed.exit_code == 0, listed.output
    assert {vm["home_region"] for vm in json.loads(listed.output)} == {"us-east1", "us-west1"}
    # a us-east1 VM read through a us-west1 node's own API: answered from its federation replica
    east = next(vm for vm in json.loads(listed.output) if vm["home_region"] == "us-east1")
    with urllib.request.urlopen(f"http://127.78.2.1:8080/v1/vms/{east['id']}", timeout=5) as r:
        assert r.headers["X-Novacron-Source"] == "federation-replica"
        assert json.loads(r.read())["home_region"] == "us-east1"
    proc.send_signal(signal.SIGINT)
    rest, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, text + rest
    assert _node_pids(78) == []
    assert list((tmp_path / "tmp").iterdir()) == []
