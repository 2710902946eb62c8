"""Start real ``novacron agent`` processes and talk to their HTTP API."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence


def free_ports(n: int, host: str = "127.0.0.1") -> list[int]:
    """``n`` ports free for both UDP and TCP right now (the agent binds both)."""
    socks, ports = [], []
    for _ in range(20 * n):
        if len(ports) == n:
            break
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((host, 0))
        t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            t.bind((host, s.getsockname()[1]))
        except OSError:
            s.close()
            t.close()
            continue
        socks += [s, t]
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    if len(ports) < n:
        raise RuntimeError(f"found only {len(ports)} of {n} free UDP+TCP ports")
    return ports


def get(url: str, timeout: float = 2.0) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def start_agent(args: Sequence[str], prefix: Sequence[str] = ()) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*prefix, sys.executable, "-m", "novacron_core.runtime.agent.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def wait_healthy(url: str, proc: subprocess.Popen[str], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"agent exited {proc.returncode}: {proc.stderr.read()}")
        try:
            if get(url + "/healthz", 0.5)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"agent at {url} not healthy after {timeout}s")


def wait_for(pred, timeout: float, step: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = pred()
        if out:
            return out
        time.sleep(step)
    return pred()


def stop(procs: Sequence[subprocess.Popen[str]]) -> list[int]:
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
    codes = []
    for p in procs:
        try:
            codes.append(p.wait(timeout=10))
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            codes.append(p.wait())
    return codes
