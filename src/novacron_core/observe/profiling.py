"""Profiling on demand: a CPU profile of the running process for N seconds, and a
tracemalloc snapshot of the top allocations.

CPU: with ``py-spy`` installed (``novacron[observe]``) and allowed to read this process
(root, or CAP_SYS_PTRACE), a sampling profile of every thread, native frames excluded, as
collapsed stacks (flame-graph input). Otherwise, or with ``mode="cprofile"``, the
standard library's cProfile on the event-loop thread (where a node's work happens),
reported as the functions with the most cumulative time. Neither stops the process.

Memory: tracemalloc is started on the first request (it costs while on, so it is not on
from the start) and the snapshot lists the source lines holding the most memory; pass
``stop=True`` to switch it off again.
"""

from __future__ import annotations

import asyncio
import cProfile
import io
import os
import pstats
import shutil
import subprocess
import tempfile
import tracemalloc
from dataclasses import dataclass
from typing import Any, Literal

MAX_SECONDS = 60.0
Mode = Literal["auto", "py-spy", "cprofile"]


class ProfileBusy(Exception):
    """Another CPU profile of this process is running."""


@dataclass(frozen=True, slots=True)
class CpuProfile:
    mode: str
    seconds: float
    text: str  # collapsed stacks (py-spy) or a pstats table (cProfile)
    top: list[dict[str, Any]]

    def as_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "seconds": self.seconds, "top": self.top, "text": self.text}


_busy = asyncio.Lock()


def py_spy_binary() -> str | None:
    return shutil.which("py-spy")


async def cpu_profile(seconds: float, mode: Mode = "auto", top: int = 25) -> CpuProfile:
    """Profile this process for ``seconds`` (at most :data:`MAX_SECONDS`)."""
    if not 0 < seconds <= MAX_SECONDS:
        raise ValueError(f"seconds: between 0 and {MAX_SECONDS:g}")
    if _busy.locked():
        raise ProfileBusy("a CPU profile is already running; retry when it ends")
    async with _busy:
        spy = py_spy_binary()
        if mode == "py-spy" and spy is None:
            raise ValueError(
                "mode py-spy: py-spy is not installed (pip install 'novacron[observe]')"
            )
        if mode in ("auto", "py-spy") and spy is not None:
            result = await _py_spy(spy, seconds, top)
            if result is not None or mode == "py-spy":
                if result is None:
                    raise PermissionError("py-spy could not read this process (needs ptrace)")
                return result
        return await _cprofile(seconds, top)


async def _py_spy(spy: str, seconds: float, top: int) -> CpuProfile | None:
    with tempfile.TemporaryDirectory(prefix="novacron-profile-") as d:
        out = os.path.join(d, "stacks.txt")
        proc = await asyncio.create_subprocess_exec(
            spy, "record", "--pid", str(os.getpid()), "--duration", str(max(1, round(seconds))),
            "--rate", "100", "--format", "raw", "--output", out, "--nonblocking",
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        await proc.communicate()
        if proc.returncode != 0:
            return None
        text = await asyncio.get_running_loop().run_in_executor(None, _read, out)
        if text is None:
            return None
    counts: dict[str, int] = {}
    total = 0
    for line in text.splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        total += int(n)
        leaf = stack.rsplit(";", 1)[-1]
        counts[leaf] = counts.get(leaf, 0) + int(n)
    ranked = sorted(counts.items(), key=lambda kv: -kv[1])[:top]
    rows = [{"function": f, "samples": n, "share": n / total if total else 0.0} for f, n in ranked]
    return CpuProfile("py-spy", seconds, text, rows)


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


async def _cprofile(seconds: float, top: int) -> CpuProfile:
    prof = cProfile.Profile()
    prof.enable()
    try:
        await asyncio.sleep(seconds)
    finally:
        prof.disable()
    buf = io.StringIO()
    stats = pstats.Stats(prof, stream=buf)
    stats.sort_stats("cumulative").print_stats(top)
    rows = []
    entries = stats.stats  # type: ignore[attr-defined]
    for (file, line, func), (_cc, nc, tt, ct, _callers) in sorted(
        entries.items(), key=lambda kv: -kv[1][3]
    )[:top]:
        rows.append(
            {"function": f"{func} ({file}:{line})", "calls": nc, "own_s": tt, "cumulative_s": ct}
        )
    return CpuProfile("cprofile", seconds, buf.getvalue(), rows)


def memory_snapshot(top: int = 25, stop: bool = False, frames: int = 1) -> dict[str, Any]:
    """The ``top`` source lines holding the most memory since tracing started."""
    started = False
    if not tracemalloc.is_tracing():
        tracemalloc.start(frames)
        started = True
    snap = tracemalloc.take_snapshot().filter_traces(
        (tracemalloc.Filter(False, tracemalloc.__file__),)
    )
    stats = snap.statistics("lineno")
    current, peak = tracemalloc.get_traced_memory()
    out = {
        "tracing_since_this_call": started,
        "traced_bytes": current,
        "peak_bytes": peak,
        "top": [
            {"where": str(s.traceback[0]), "bytes": s.size, "blocks": s.count} for s in stats[:top]
        ],
    }
    if stop:
        tracemalloc.stop()
    return out
