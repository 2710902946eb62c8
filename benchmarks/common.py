"""Shared shape of every benchmark's result, the machine description, and the table."""

from __future__ import annotations

import json
import os
import platform
import random
import socket
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict[str, Any]:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "os": f"{platform.system()} {platform.release()}",
    }


def result(
    name: str,
    figures: dict[str, Any],
    peers: dict[str, Any] | None = None,
    ratios: dict[str, Any] | None = None,
    params: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "name": name,
        "figures": figures,
        "peers": peers or {},
        "ratios": ratios or {},
        "machine": machine(),
        "params": params or {},
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:,.3f}" if abs(v) < 100 else f"{v:,.0f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def free_ports(n: int) -> list[int]:
    """``n`` listening ports for test processes, each with the next port free too (a node
    also listens on its HTTP port + 1, the wire API), chosen below the ephemeral range
    (32768+) so no client connection of any process holds one by the time a node binds it."""
    rng = random.Random()
    held: list[socket.socket] = []
    ports: list[int] = []
    try:
        for _ in range(2000):
            if len(ports) == n:
                return ports
            p = rng.randrange(20000, 32000, 2)  # even: p and p + 1 never straddle two picks
            pair = []
            try:
                for q in (p, p + 1):
                    sock = socket.socket()
                    pair.append(sock)
                    sock.bind(("127.0.0.1", q))
            except OSError:
                for sock in pair:
                    sock.close()
                continue
            held += pair
            ports.append(p)
        raise RuntimeError(f"no {n} free port pairs in 20000-32000")
    finally:
        for sock in held:
            sock.close()


def report(res: dict[str, Any]) -> None:
    """Print the result as a small table and write it to benchmarks/results/NAME.json."""
    print(
        f"\n== {res['name']} ==  ({res['machine']['cpu']}, {res['machine']['cores']} cores, "
        f"Python {res['machine']['python']})"
    )
    for section in ("figures", "peers", "ratios"):
        rows = res[section]
        if not rows:
            continue
        print(f"  {section}:")
        width = max(len(k) for k in rows)
        for k, v in rows.items():
            print(f"    {k:<{width}}  {_fmt(v)}")
    if res["params"]:
        print(f"  params: {json.dumps(res['params'], sort_keys=True)}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{res['name']}.json").write_text(json.dumps(res, indent=2, sort_keys=True) + "\n")


def load_figures(latencies: list[float], elapsed: float, errors: int) -> dict[str, Any]:
    """A closed-loop load's figures from its successful writes' latencies (seconds)."""
    latencies = sorted(latencies)
    n = len(latencies)
    return {
        "writes_per_s": n / elapsed,
        "p50_ms": 1000 * latencies[n // 2] if n else None,
        "p99_ms": 1000 * latencies[min(n - 1, int(n * 0.99))] if n else None,
        "writes": n,
        "errors": errors,
    }
