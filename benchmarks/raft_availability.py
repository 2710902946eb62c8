"""Availability of a 3-member Raft group, ours beside etcd (rows of ``benchmarks.raft``).

- **restart-to-leader**: kill -9 every member, start them all again, time until a leader
  is elected. Measured two ways. Polled, for both systems alike: from the moment every
  member's client port accepts a connection to the first status answer naming a leader
  (10 ms polling). From our nodes' logs (CLOCK_MONOTONIC, shared by every process): from the
  last member's "listening" line to the first "leader" line. Idle, and with the cores busy.
- **leader changes under load**: ``2 x cores`` busy-looping processes beside the group while
  one client writes every 50 ms; leader terms are polled every 100 ms on every member, and
  for our nodes every *same-term* step-down is counted from the logs: a leader that stops
  leading without a higher term arriving, i.e. CheckQuorum giving up on followers that were
  only slow. No fault is injected, so every leader change there is spurious.
- **leader changes under host stalls**: the same, but every 0.5-1.5 s the whole group is
  frozen for ``STALL_S`` (SIGSTOP all members at once, SIGCONT them together): what a host
  that stops running its processes for a while does (the loaded runs above showed every
  node's event loop lagging 100-220 ms at the same moments). Nobody was partitioned and
  nobody died: from inside the group nothing happened, so every leader change is spurious.

``python -m benchmarks.raft --only availability [--quick]`` runs these rows alone.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import random
import re
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from benchmarks.raft import Cluster

LISTEN_LINE = re.compile(r"listening at ([\d.]+)")
ROLE_LINE = re.compile(r"raft role (\S+) term (\d+) at ([\d.]+)")


@contextlib.contextmanager
def busy_cores(n: int) -> Iterator[None]:
    """``n`` processes spinning on the CPU (normal priority, like any other tenant)."""
    spinners = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"], stdin=subprocess.DEVNULL)
        for _ in range(n)
    ]
    try:
        yield
    finally:
        for p in spinners:
            p.kill()
        for p in spinners:
            p.wait()


def status(c: Cluster, member: str) -> tuple[int, bool] | None:
    """(term, leads) as ``member`` reports it; None when it does not answer."""
    base = c.http[member]
    try:
        if c.name == "etcd":
            req = urllib.request.Request(base + "/v3/maintenance/status", data=b"{}", method="POST")
            with urllib.request.urlopen(req, timeout=1.0) as r:
                st = json.loads(r.read())
            header = st.get("header", {})
            return int(header.get("raft_term", 0)), st.get("leader") == header.get("member_id")
        with urllib.request.urlopen(base + "/v1/cluster", timeout=1.0) as r:
            st = json.loads(r.read())
        return int(st["term"]), st.get("role") == "leader"
    except (OSError, ValueError, KeyError):
        return None


def _accepts(url: str) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "", parts.port or 80), timeout=0.05):
            return True
    except OSError:
        return False


def _log_times(c: Cluster, member: str, since: float) -> tuple[list[float], list[Any]]:
    try:
        text = c.sup.procs[member].log_path.read_text(errors="replace")
    except OSError:
        return [], []
    listens = [float(m.group(1)) for m in LISTEN_LINE.finditer(text) if float(m.group(1)) >= since]
    roles = [
        (float(m.group(3)), m.group(1), int(m.group(2)))
        for m in ROLE_LINE.finditer(text)
        if float(m.group(3)) >= since
    ]
    return listens, roles


def restart_to_leader(c: Cluster, times: int, timeout: float = 30.0) -> dict[str, Any]:
    polled: list[float] = []
    logged: list[float] = []
    failed = 0
    for _ in range(times):
        c.leader(timeout)
        m0 = time.monotonic()
        for m in c.members:
            c.sup.kill(m, signal.SIGKILL)
        for m in c.members:
            c.sup.restart(m)
        listening: dict[str, float] = {}
        deadline = time.monotonic() + timeout
        while len(listening) < len(c.members) and time.monotonic() < deadline:
            for m in c.members:
                if m not in listening and _accepts(c.http[m]):
                    listening[m] = time.monotonic()
            time.sleep(0.01)
        all_up = max(listening.values(), default=time.monotonic())
        elected = None
        while elected is None and time.monotonic() < deadline:
            for m in c.members:
                st = status(c, m)
                if st is not None and st[1]:
                    elected = time.monotonic()
                    break
            else:
                time.sleep(0.01)
        if elected is None:
            failed += 1
            continue
        polled.append(max(0.0, elected - all_up))
        if c.name == "novacron":
            listens, leaders = [], []
            for m in c.members:
                ls, roles = _log_times(c, m, m0)
                listens.extend(ls)
                leaders.extend(t for t, role, _ in roles if role == "leader")
            if len(listens) == len(c.members) and leaders:
                logged.append(max(0.0, min(leaders) - max(listens)))
        for m in c.members:  # steady before the next round
            c.sup.wait_until(f"{m} ready", lambda m=m: status(c, m) is not None, timeout)
    out: dict[str, Any] = {"restarts": times, "failed": failed}
    for name, xs in (("polled", polled), ("logged", logged)):
        if xs:
            xs.sort()
            out[f"{name}_p50_ms"] = 1000 * statistics.median(xs)
            out[f"{name}_max_ms"] = 1000 * xs[-1]
    return out


STALL_S = 0.3


def leader_changes(c: Cluster, seconds: float, stall_s: float = 0.0) -> dict[str, Any]:
    """Leader changes (term increases) and, for our nodes, same-term step-downs while one
    client writes every 50 ms, over ``seconds``; with ``stall_s``, the whole group frozen
    that long every 0.5-1.5 s."""
    c.leader()
    m0 = time.monotonic()
    stop = threading.Event()
    terms: list[int] = []
    stalls = [0]

    def stall() -> None:
        rng = random.Random(0)
        while not stop.wait(rng.uniform(0.5, 1.5)):
            pops = [p for m in c.members if (p := c.sup.procs[m].popen) is not None]
            for p in pops:
                p.send_signal(signal.SIGSTOP)
            time.sleep(stall_s)
            for p in pops:
                p.send_signal(signal.SIGCONT)
            stalls[0] += 1

    def poll() -> None:
        while not stop.is_set():
            seen = [st[0] for m in c.members if (st := status(c, m)) is not None]
            if seen:
                terms.append(max(seen))
            stop.wait(0.1)

    writes = {"ok": 0, "failed": 0}

    def write() -> None:
        i = 0
        while not stop.is_set():
            base = c.http[c.members[i % len(c.members)]]
            method, url, kw = c.put(base, f"avail-{i}", b"x")
            data = kw.get("data")
            if "json" in kw:
                data = json.dumps(kw["json"]).encode()
            req = urllib.request.Request(url, data=data, method=method)
            try:
                with urllib.request.urlopen(req, timeout=2.0) as r:
                    writes["ok" if r.status < 300 else "failed"] += 1
            except OSError:
                writes["failed"] += 1
            i += 1
            stop.wait(0.05)

    threads = [threading.Thread(target=poll), threading.Thread(target=write)]
    if stall_s:
        threads.append(threading.Thread(target=stall))
    for t in threads:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join()
    minutes = (time.monotonic() - m0) / 60
    changes = sum(1 for a, b in itertools.pairwise(terms) if b > a)
    out: dict[str, Any] = {
        "seconds": round(time.monotonic() - m0, 1),
        "leader_changes_per_min": changes / minutes,
        "writes_ok": writes["ok"],
        "writes_failed": writes["failed"],
    }
    if stall_s:
        out["stalls"] = stalls[0]
    if c.name == "novacron":
        stepdowns = 0
        for m in c.members:
            _, roles = _log_times(c, m, m0)
            for (_, role, term), (_, nxt, nterm) in itertools.pairwise(roles):
                if role == "leader" and nxt != "leader" and nterm == term:
                    stepdowns += 1
        out["same_term_stepdowns_per_min"] = stepdowns / minutes
    return out


def availability(c: Cluster, quick: bool) -> dict[str, Any]:
    """Every availability row for one system, idle then with the cores busy."""
    restarts, window = (3, 20.0) if quick else (10, 60.0)
    load = 2 * (os.cpu_count() or 1)
    out: dict[str, Any] = {"load_processes": load}
    for k, v in restart_to_leader(c, restarts).items():
        out[f"restart_idle_{k}"] = v
    for k, v in leader_changes(c, window).items():
        out[f"idle_{k}"] = v
    with busy_cores(load):
        for k, v in restart_to_leader(c, restarts).items():
            out[f"restart_loaded_{k}"] = v
        for k, v in leader_changes(c, window).items():
            out[f"loaded_{k}"] = v
    for k, v in leader_changes(c, window, stall_s=STALL_S).items():
        out[f"stalled_{k}"] = v
    return out
