"""``python -m benchmarks NAME [--quick]`` or ``python -m benchmarks all``."""

from __future__ import annotations

import argparse
import importlib
import sys
import time

NAMES = [
    "sim",
    "rga",
    "gossip",
    "raft",
    "consensus",
    "operator",
    "observe",
    "gateway",
    "routing",
    "conflict",
    "dr",
]  # each is a module here with run(quick) -> result dict


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Run NovaCron benchmarks; each prints our figure beside a peer measured "
        "in the same run, and writes benchmarks/results/NAME.json.",
    )
    parser.add_argument(
        "name", choices=[*NAMES, "all"], help="which benchmark ('all' for every one)"
    )
    parser.add_argument("--quick", action="store_true", help="same shape, under 60 s each")
    args = parser.parse_args(argv)
    from benchmarks.common import report

    failed = []
    for name in NAMES if args.name == "all" else [args.name]:
        print(f"running {name}{' (quick)' if args.quick else ''} ...", flush=True)
        start = time.perf_counter()
        try:
            res = importlib.import_module(f"benchmarks.{name}").run(quick=args.quick)
        except Exception as e:  # one broken benchmark must not hide the others' figures
            print(f"  {name} failed: {e!r}", file=sys.stderr)
            failed.append(name)
            continue
        report(res)
        print(f"  ({time.perf_counter() - start:.1f}s)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
