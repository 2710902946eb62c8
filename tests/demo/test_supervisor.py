"""The supervisor leaves nothing behind, even when it is itself killed with -9."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from novacron_core.demo.procs import Supervisor

CHILD = "import time; time.sleep(600)"
SUPERVISE = f"""
import sys, time
from novacron_core.demo.procs import Supervisor
sup = Supervisor()
p = sup.start("sleeper", [sys.executable, "-c", {CHILD!r}])
print(p.pid, sup.base, flush=True)
time.sleep(600)
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat").read_text() if Path(f"/proc/{pid}/stat").exists() else ""
    return " Z " not in stat  # a zombie has exited


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux")
def test_children_die_with_a_killed_supervisor_and_the_next_one_sweeps_its_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    sup_proc = subprocess.Popen(
        [sys.executable, "-c", SUPERVISE], stdout=subprocess.PIPE, text=True, env=env
    )
    assert sup_proc.stdout is not None
    pid_s, base_s = sup_proc.stdout.readline().split()
    child, base = int(pid_s), Path(base_s)
    assert _alive(child)
    assert base.exists()
    sup_proc.send_signal(signal.SIGKILL)
    sup_proc.wait()
    deadline = time.monotonic() + 10
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child), "the child outlived its supervisor"
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with Supervisor() as sup:
        assert sup.swept == [base]
        assert not base.exists()
        mine = sup.base
    assert not mine.exists()
    assert list(tmp_path.iterdir()) == []


def test_a_live_supervisors_dir_is_not_swept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with Supervisor() as first, Supervisor() as second:
        assert second.swept == []
        assert first.base.exists()
