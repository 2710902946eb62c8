"""Where a write's time goes on the leader: py-spy samples the leader of a 3-node group
(fsync on) while the raft benchmark's load runs, over HTTP/JSON and over the wire API.

``python -m benchmarks.raft_profile [--seconds S] [--out DIR]`` writes, per transport, a
flame graph (``<out>/<transport>.svg``), the collapsed stacks (``.txt``) and prints the
top functions by own time and by inclusive time (docs/write-path.md quotes them).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import shutil
import subprocess
import sys
from pathlib import Path

from benchmarks.raft import _load, _ready, start_novacron
from benchmarks.wire_load import wire_load
from novacron_core.demo.procs import Supervisor


def top(collapsed: Path, n: int = 15) -> tuple[list[tuple[str, float]], list[tuple[str, float]]]:
    """(own-time, inclusive-time) tops as (function, share of samples)."""
    own: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        c = int(count)
        total += c
        frames = [f.split(" (")[0] + " (" + f.split(" (")[-1] for f in stack.split(";")]
        if frames:
            own[frames[-1]] += c
        for f in set(frames):
            incl[f] += c
    total = max(total, 1)
    return (
        [(f, c / total) for f, c in own.most_common(n)],
        [(f, c / total) for f, c in incl.most_common(n)],
    )


def profile(transport: str, seconds: float, out: Path) -> None:
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    with Supervisor(prefix="novacron-bench-profile-") as sup:
        c = start_novacron(sup)
        leader = c.leader(timeout=60)
        for m in c.members:
            sup.wait_until(f"{m} ready", lambda m=m: _ready(c, m), timeout=60)
        popen = sup.procs[leader].popen
        assert popen is not None
        outs = {}
        for fmt, ext in (("flamegraph", "svg"), ("raw", "txt")):
            outs[fmt] = out / f"{transport}.{ext}"
        procs = [
            subprocess.Popen(
                [
                    spy,
                    "record",
                    "--nonblocking",
                    "-p",
                    str(popen.pid),
                    "-d",
                    str(int(seconds)),
                    "-r",
                    "200",
                    "-f",
                    fmt,
                    "-o",
                    str(path),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for fmt, path in outs.items()
        ]
        if transport == "http":
            res = asyncio.run(_load(c, 64, seconds + 1, 256))
        else:
            res = wire_load(c, clients=64, conns=64, seconds=seconds + 1, value_size=256)
        for p in procs:
            p.wait(timeout=60)
    print(f"{transport}: {res['writes_per_s']:.0f} writes/s under the profiler (slowed by it)")
    own, incl = top(outs["raw"])
    print("  own time:")
    for f, share in own:
        print(f"    {100 * share:5.1f}%  {f}")
    print("  inclusive:")
    for f, share in incl:
        print(f"    {100 * share:5.1f}%  {f}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.raft_profile", description=__doc__)
    p.add_argument("--seconds", type=float, default=8.0)
    p.add_argument("--out", type=Path, default=Path("/tmp/novacron-profile"))
    p.add_argument("--transport", choices=["http", "wire", "both"], default="both")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for t in ("http", "wire") if args.transport == "both" else (args.transport,):
        profile(t, args.seconds, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
