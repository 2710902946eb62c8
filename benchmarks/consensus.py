"""Each consensus protocol on real loopback processes, under the Raft benchmark's load, beside
Raft and etcd measured in the same run.

Three ``novacron node --protocol P`` processes per protocol (fsync on), and one load
generator driving every system the same way (``benchmarks/raft.py``: HTTP/JSON PUTs of
256-byte values from 64 concurrent clients to the leader; for eventual, to one replica,
which answers alone). Multi-Paxos also gets its leader killed (-9) and the time to the next
acknowledged write measured, as Raft's failover is.

What the rows mean: Raft and Multi-Paxos acknowledge a write once a majority has it on disk
(one fsync on the leader and one on a follower, in parallel); eventual acknowledges after
the receiving replica's own fsync and replicates afterwards, so it measures the cost of the
sync engine's journal and gossip, not of agreement.

``python -m benchmarks consensus [--quick]``.
"""

from __future__ import annotations

import os
from typing import Any

from benchmarks.common import result
from benchmarks.raft import _measure, etcd_binary, start_etcd, start_novacron
from novacron_core.demo.procs import Supervisor

PROTOCOLS = ("raft", "multi-paxos", "eventual")


def _start(protocol: str) -> Any:
    def start(sup: Supervisor) -> Any:
        return start_novacron(sup, protocol=protocol)

    return start


def run(quick: bool = False) -> dict[str, Any]:
    clients, seconds = 64, (5.0 if quick else 20.0)
    kills = 5 if quick else 20
    load = os.getloadavg()
    rows: dict[str, dict[str, Any]] = {}
    for proto in PROTOCOLS:
        k = kills if proto == "multi-paxos" else 0
        print(
            f"  {proto}: 3 nodes, {clients} clients, {seconds:.0f}s, {k} leader kills", flush=True
        )
        rows[proto] = _measure(_start(proto), clients, seconds, k)
    peers: dict[str, Any] = {}
    etcd = etcd_binary()
    if etcd:
        print(f"  etcd ({etcd}): same load", flush=True)
        res = _measure(lambda s: start_etcd(s, etcd), clients, seconds, 0)
        peers = {f"etcd.{k}": v for k, v in res.items() if not isinstance(v, dict)}
        rows["etcd"] = res
    else:
        peers["etcd"] = "not built: run `make k8s-bin` (builds etcd 3.6 from the Go module proxy)"
    figures: dict[str, Any] = {}
    for proto in PROTOCOLS:
        for key in ("writes_per_s", "p50_ms", "p99_ms", "errors"):
            figures[f"{proto}.{key}"] = rows[proto].get(key)
    for key, value in rows["multi-paxos"].get("failover", {}).items():
        figures[f"multi-paxos.failover_{key}"] = value
    ratios: dict[str, Any] = {}
    for proto in ("multi-paxos", "eventual"):
        for base in ("raft", "etcd"):
            if base not in rows:
                continue
            ours, theirs = rows[proto], rows[base]
            if ours.get("writes_per_s") and theirs.get("writes_per_s"):
                ratios[f"{proto}_vs_{base}"] = ours["writes_per_s"] / theirs["writes_per_s"]
            if ours.get("p99_ms") and theirs.get("p99_ms"):
                ratios[f"{proto}_p99_vs_{base}"] = ours["p99_ms"] / theirs["p99_ms"]
    return result(
        "consensus",
        figures,
        peers,
        ratios,
        {
            "clients": clients,
            "seconds": seconds,
            "value_bytes": 256,
            "members": 3,
            "fsync": True,
            "multi_paxos_kills": kills,
            "loadavg_at_start": [round(x, 2) for x in load],
            "loadavg_at_end": [round(x, 2) for x in os.getloadavg()],
        },
    )
