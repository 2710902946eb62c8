"""Running ``novacron demo`` as a subprocess and finding what it started (shared by the demo
tests and the observability test that scrapes the demo federation)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path


def demo_pids(tmp: Path) -> list[tuple[int, str]]:
    """Every live process with the demo's temporary dir in its command line."""
    needle = str(tmp).encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if needle in cmd:
            found.append((int(entry.name), cmd.replace(b"\x00", b" ").decode(errors="replace")))
    return found


def node_pids(where: int | Path) -> list[int]:
    """Pids of live node processes of this demo: by address octet (loopback layout), or by
    their data dir under the demo's TMPDIR (any layout)."""
    needle = f"127.{where}.".encode() if isinstance(where, int) else str(where).encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if b"novacron_core.cli\x00node\x00" in cmd and needle in cmd:
            pids.append(int(entry.name))
    return pids


def start_demo(tmp_path: Path, octet: int, *args: str) -> subprocess.Popen[str]:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {**os.environ, "TMPDIR": str(tmp), "PYTHONUNBUFFERED": "1"}
    argv = [sys.executable, "-m", "novacron_core.cli", "demo", f"--address-octet={octet}", *args]
    return subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )


def output_until_interactive(proc: subprocess.Popen[str]) -> str:
    """What the demo printed until it handed the federation to the user (at most 120 s)."""
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 120
    for line in proc.stdout:
        lines.append(line)
        if "Ctrl-C stops" in line or time.monotonic() > deadline:
            break
    text = "".join(lines)
    assert "Ctrl-C stops" in text, text
    return text
