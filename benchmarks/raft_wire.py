"""The write path beside etcd's own tool: our wire API (``benchmarks/wire_load.py``, closed-
loop clients like etcd's) against etcd's ``benchmark put`` (gRPC), both 3 members on
loopback with fsync, the same clients, connections, 16-byte keys and value size, in one
run. Both groups stay up for the whole run and the two loads alternate shape by shape, so
a change in what else the (shared) machine does hits both alike.

Shapes: 64 clients x 256 B (the headline, issue 18's target: >= 1.0x etcd's writes/s with
p99 <= etcd's), then 1 / 16 / 256 clients x 256 B and 64 clients x 1 KiB / 16 KiB.
``python -m benchmarks.raft --only write-path [--quick]`` runs these rows alone;
``NOVACRON_BENCH_SECONDS`` overrides the seconds per row (10, or 3 with --quick).
"""

from __future__ import annotations

import os
from typing import Any

from benchmarks.raft import (
    Cluster,
    _ready,
    etcd_binary,
    etcd_native_put,
    start_etcd,
    start_novacron,
)
from benchmarks.wire_load import wire_load
from novacron_core.demo.procs import Supervisor

# (clients, value bytes); the first is the headline
SHAPES = [(64, 256), (1, 256), (16, 256), (256, 256), (64, 1024), (64, 16384)]
# roughly etcd's rate per shape on a 2-core machine: how many puts to ask its tool for
RATE_GUESS = {1: 400.0, 16: 2000.0, 64: 3000.0, 256: 3500.0}


def shape_name(clients: int, value: int) -> str:
    size = f"{value // 1024}k" if value >= 1024 else f"{value}b"
    return f"c{clients}_{size}"


def _up(c: Cluster) -> Cluster:
    c.leader(timeout=60)
    for m in c.members:
        c.sup.wait_until(f"{c.name} {m} ready", lambda m=m: _ready(c, m), timeout=60)
    return c


def write_path(quick: bool = False) -> dict[str, Any]:
    """{"ours": {shape: figures}, "etcd_tool": {shape: figures}, "ratios": {...}}."""
    seconds = float(os.environ.get("NOVACRON_BENCH_SECONDS", 3.0 if quick else 10.0))
    etcd = etcd_binary()
    ours: dict[str, Any] = {}
    theirs: dict[str, Any] = {}
    ratios: dict[str, Any] = {}
    with (
        Supervisor(prefix="novacron-bench-wire-") as sup,
        Supervisor(prefix="novacron-bench-wire-etcd-") as esup,
    ):
        c = _up(start_novacron(sup))
        e = _up(start_etcd(esup, etcd)) if etcd else None
        for clients, value in SHAPES:
            name = shape_name(clients, value)
            conns = min(clients, 64)
            ours[name] = wire_load(c, clients, conns, seconds, value)
            if e is None:
                theirs[name] = "not built: run `make k8s-bin`"
            else:
                guess = RATE_GUESS.get(clients, 3000.0) * (0.5 if value > 4096 else 1.0)
                theirs[name] = etcd_native_put(e, seconds, clients, conns, value, guess)
            mine, other = ours[name], theirs[name]
            line = f"    {name}: ours {_w(mine)} w/s p99 {_ms(mine)}"
            if isinstance(mine, dict) and mine.get("errors"):
                line += f" ({mine['errors']} errors: {mine.get('error_kinds')})"
            if isinstance(other, dict) and other.get("writes_per_s") and mine.get("writes_per_s"):
                ratios[f"{name}_vs_etcd_tool"] = mine["writes_per_s"] / other["writes_per_s"]
                if other.get("p99_ms") and mine.get("p99_ms"):
                    ratios[f"{name}_p99_vs_etcd_tool"] = mine["p99_ms"] / other["p99_ms"]
                line += f"; etcd tool {_w(other)} w/s p99 {_ms(other)}"
                line += f"; {ratios[f'{name}_vs_etcd_tool']:.2f}x"
            print(line, flush=True)
    return {"ours": ours, "etcd_tool": theirs, "ratios": ratios, "seconds": seconds}


def _w(r: Any) -> str:
    return f"{r['writes_per_s']:.0f}" if isinstance(r, dict) and r.get("writes_per_s") else "-"


def _ms(r: Any) -> str:
    v = r.get("p99_ms") if isinstance(r, dict) else None
    return f"{v:.1f} ms" if v else "-"


def flatten(res: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(our figures, peer figures, ratios) for benchmarks.common.result."""
    figures: dict[str, Any] = {}
    for shape, r in res["ours"].items():
        for k, v in r.items() if isinstance(r, dict) else ():
            if isinstance(v, dict):  # error_kinds: one figure per kind
                figures.update({f"wire.{shape}.{k}.{kind}": n for kind, n in v.items()})
            else:
                figures[f"wire.{shape}.{k}"] = v
    peers: dict[str, Any] = {}
    for shape, r in res["etcd_tool"].items():
        if isinstance(r, dict):
            peers.update({f"etcd_tool.{shape}.{k}": v for k, v in r.items()})
        else:
            peers[f"etcd_tool.{shape}"] = r
    return figures, peers, {f"wire_{k}": v for k, v in res["ratios"].items()}


def load_note() -> str:
    """What the machine was doing (1/5/15-minute load averages; 2 cores here)."""
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} cores"
