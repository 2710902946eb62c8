"""Regional Raft write throughput and failover, beside etcd and PySyncObj in the same run.

Every system runs 3 members on loopback with its own data directories, and one load
generator drives all of them the same way — HTTP/JSON PUTs of 256-byte values from 64
concurrent clients to the leader — so client cost is equal. Durability: ours and etcd fsync
before acknowledging; PySyncObj has no fsync-per-commit mode (its journal is an mmap'd file
that is never msynced per command), which favours it.

Failover: kill -9 the leader, time until a write is acknowledged by the new leader, restart
the old one, wait until it is ready again; repeat. For our nodes each sample is also split
into phases from the survivors' role-change log lines (CLOCK_MONOTONIC is shared by every
process): detection (kill -> first campaign), election (-> a leader), commit (-> the
client's write acknowledged), and the measuring client's own share is reported (its longest
single attempt and retry count), so a slow client cannot pass for a slow failover.

``python -m benchmarks.raft --only failover [--kills N] [--runs R]`` measures failover
alone (our nodes only, no etcd/PySyncObj): what to run when tuning elections.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import re
import signal
import socket
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from benchmarks.common import free_ports, load_figures, result
from novacron_core.demo.procs import Supervisor

K8S_BIN = Path.home() / ".cache/novacron/k8s-bin"


def _ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def etcd_binary() -> str | None:
    env = os.environ.get("NOVACRON_ETCD")
    if env:
        return env
    found = sorted(K8S_BIN.glob("*/etcd"))
    return str(found[-1]) if found else None


@dataclass
class Cluster:
    """Three members of one system under a Supervisor, and how to write to it."""

    name: str
    sup: Supervisor
    members: list[str] = field(default_factory=list)
    http: dict[str, str] = field(default_factory=dict)  # member -> base URL
    leader_of: Callable[[Cluster], str | None] = lambda c: None
    put: Callable[[str, str, bytes], tuple[str, str, dict[str, Any]]] = lambda base, key, value: (
        "PUT",
        base,
        {},
    )
    ready_path: str = "/"
    # the system's own load tool, run once after our load (etcd: `benchmark put`)
    native: Callable[[Cluster, float], dict[str, Any]] | None = None

    def leader(self, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                found = self.leader_of(self)
            except OSError:
                found = None
            if found:
                return found
            time.sleep(0.05)
        raise TimeoutError(f"{self.name}: no leader within {timeout:.0f}s")


def _get_json(url: str, body: bytes | None = None, timeout: float = 1.0) -> Any:
    import json
    import urllib.request

    req = urllib.request.Request(url, data=body, method="POST" if body is not None else "GET")
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read())


# ------------------------------------------------------------------ the three systems


def start_novacron(
    sup: Supervisor,
    extra_args: list[str] | None = None,
    env: dict[str, str] | None = None,
    protocol: str = "raft",
) -> Cluster:
    """Three ``novacron node`` processes running ``protocol`` (raft, multi-paxos, eventual);
    ``extra_args``/``env`` go to every node (benchmarks/observe.py: metrics off, tracing)."""
    ports = free_ports(6)  # each with its neighbour free: a node's wire API is HTTP + 1
    names = ["n1", "n2", "n3"]
    peers = ",".join(
        f"{n}=127.0.0.1:{ports[2 * i]}/127.0.0.1:{ports[2 * i + 1]}" for i, n in enumerate(names)
    )
    c = Cluster("novacron" if protocol == "raft" else protocol, sup, names)
    for i, n in enumerate(names):
        c.http[n] = f"http://127.0.0.1:{ports[2 * i + 1]}"
        argv = [sys.executable, "-m", "novacron_core.runtime.node_cli", "--node-id", n]
        argv += ["--data-dir", str(sup.dir_for(f"novacron-{n}")), "--peers", peers, "--fsync"]
        argv += ["--protocol", protocol]
        sup.start(n, argv + list(extra_args or []), {"PYTHONUNBUFFERED": "1", **(env or {})})

    def leader_of(cl: Cluster) -> str | None:
        for m in cl.members:
            if not sup.procs[m].running:
                continue
            try:
                st = _get_json(cl.http[m] + "/v1/cluster")
            except OSError:
                continue
            if st.get("leader") in cl.members and st.get("role") == "leader":
                return str(st["leader"])
        return None

    c.leader_of = leader_of
    c.put = lambda base, key, value: ("PUT", f"{base}/v1/kv/{key}", {"data": value})
    c.ready_path = "/readyz"
    return c


def start_etcd(sup: Supervisor, binary: str) -> Cluster:
    ports = _ports(6)
    names = ["e1", "e2", "e3"]
    initial = ",".join(f"{n}=http://127.0.0.1:{ports[2 * i]}" for i, n in enumerate(names))
    c = Cluster("etcd", sup, names)
    for i, n in enumerate(names):
        peer, client = f"http://127.0.0.1:{ports[2 * i]}", f"http://127.0.0.1:{ports[2 * i + 1]}"
        c.http[n] = client
        argv = [binary, "--name", n, "--data-dir", str(sup.dir_for(f"etcd-{n}"))]
        argv += ["--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer]
        argv += ["--listen-client-urls", client, "--advertise-client-urls", client]
        argv += ["--initial-cluster", initial, "--initial-cluster-state", "new"]
        argv += ["--log-level", "error"]
        sup.start(n, argv)

    def leader_of(cl: Cluster) -> str | None:
        for m in cl.members:
            if not sup.procs[m].running:
                continue
            try:
                st = _get_json(cl.http[m] + "/v3/maintenance/status", b"{}")
            except OSError:
                continue
            if st.get("leader") and st["leader"] == st.get("header", {}).get("member_id"):
                return m
        return None

    def put(base: str, key: str, value: bytes) -> tuple[str, str, dict[str, Any]]:
        body = {
            "key": base64.b64encode(key.encode()).decode(),
            "value": base64.b64encode(value).decode(),
        }
        return "POST", f"{base}/v3/kv/put", {"json": body}

    c.leader_of, c.put, c.ready_path = leader_of, put, "/health"
    c.native = etcd_native_put
    return c


def etcd_native_put(
    c: Cluster,
    seconds: float,
    clients: int = 64,
    conns: int = 64,
    value_size: int = 256,
    rate_guess: float = 3000.0,
) -> dict[str, Any]:
    """etcd's own `benchmark put` (gRPC; by default 64 clients, 256-byte values) as a
    reference figure: what etcd does without our HTTP/JSON load generator in the way."""
    import re
    import subprocess

    tool = Path(etcd_binary() or "").with_name("etcd-benchmark")
    if not tool.is_file():
        return {"error": "etcd-benchmark not built (make k8s-bin)"}
    leader = c.http[c.leader()].removeprefix("http://")
    total = max(200, int(rate_guess * seconds))  # about as many puts as the duration allows
    argv = [str(tool), "--endpoints", leader, "--target-leader", "--conns", str(conns)]
    argv += ["--clients", str(clients), "put", "--key-size", "16", "--val-size", str(value_size)]
    argv += ["--total", str(total), "--sequential-keys", "--key-space-size", str(total)]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    rate = re.search(r"Requests/sec:\s*([\d.]+)", proc.stdout)
    p99 = re.search(r"99% in ([\d.]+) secs", proc.stdout)
    p50 = re.search(r"50% in ([\d.]+) secs", proc.stdout)
    if proc.returncode != 0 or rate is None:
        return {"error": (proc.stderr or proc.stdout)[-300:]}
    out: dict[str, Any] = {"writes_per_s": float(rate.group(1)), "total": total}
    if p99:
        out["p99_ms"] = 1000 * float(p99.group(1))
    if p50:
        out["p50_ms"] = 1000 * float(p50.group(1))
    return out


def start_pysyncobj(sup: Supervisor) -> Cluster:
    ports = _ports(6)
    names = ["p1", "p2", "p3"]
    raft = {n: f"127.0.0.1:{ports[2 * i]}" for i, n in enumerate(names)}
    c = Cluster("pysyncobj", sup, names)
    for i, n in enumerate(names):
        c.http[n] = f"http://127.0.0.1:{ports[2 * i + 1]}"
        journal = str(sup.dir_for(f"pysyncobj-{n}") / "journal")
        others = [raft[m] for m in names if m != n]
        argv = [sys.executable, "-m", "benchmarks.peers.pysyncobj_front", raft[n]]
        argv += [c.http[n].removeprefix("http://"), journal, *others]
        sup.start(n, argv)
    by_raft = {v: k for k, v in raft.items()}

    def leader_of(cl: Cluster) -> str | None:
        for m in cl.members:
            if not sup.procs[m].running:
                continue
            try:
                st = _get_json(cl.http[m] + "/status")
            except OSError:
                continue
            if st.get("ready") and st.get("leader") in by_raft:
                return by_raft[st["leader"]]
        return None

    c.leader_of = leader_of
    c.put = lambda base, key, value: ("PUT", f"{base}/kv/{key}", {"data": value})
    c.ready_path = "/status"
    return c


# ------------------------------------------------------------------ load and failover


async def _load(c: Cluster, clients: int, seconds: float, value_size: int) -> dict[str, Any]:
    base = c.http[c.leader()]
    value = os.urandom(value_size // 2).hex().encode()[:value_size]
    latencies: list[float] = []
    errors = 0
    stop = time.monotonic() + seconds
    conn = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=conn) as session:

        async def worker(w: int) -> None:
            nonlocal errors
            i = 0
            while time.monotonic() < stop:
                method, url, kw = c.put(base, f"bench-{w}-{i}", value)
                i += 1
                t0 = time.perf_counter()
                try:
                    async with session.request(
                        method, url, timeout=aiohttp.ClientTimeout(total=10), **kw
                    ) as r:
                        await r.read()
                        ok = r.status < 300
                except (aiohttp.ClientError, TimeoutError):
                    ok = False
                if ok:
                    latencies.append(time.perf_counter() - t0)
                else:
                    errors += 1

        t0 = time.perf_counter()
        await asyncio.gather(*(worker(w) for w in range(clients)))
        elapsed = time.perf_counter() - t0
    return load_figures(latencies, elapsed, errors)


ROLE_LINE = re.compile(r"raft role (\S+) term (\d+) at ([\d.]+)")


def _role_changes(c: Cluster, member: str, since: float) -> list[tuple[float, str, int]]:
    """(monotonic time, role, term) of ``member``'s role changes after ``since``, from the
    node's log (our nodes log each change with time.monotonic(), shared across processes)."""
    try:
        text = c.sup.procs[member].log_path.read_text(errors="replace")
    except OSError:
        return []
    out = []
    for m in ROLE_LINE.finditer(text):
        t = float(m.group(3))
        if t >= since:
            out.append((t, m.group(1), int(m.group(2))))
    return out


def failover(c: Cluster, times: int, timeout: float = 20.0, freeze: bool = False) -> dict[str, Any]:
    """``freeze``: SIGSTOP the leader instead of kill -9. A frozen process keeps its sockets
    open, so nothing tells the followers (as with a hung host or a network partition) and
    failover takes the election-timeout path; it is killed and restarted afterwards."""
    import urllib.error
    import urllib.request

    samples: list[float] = []
    phases: dict[str, list[float]] = {"detect": [], "elect": [], "commit": []}
    longest_attempt = 0.0
    attempts_total = 0
    elections_beyond_one = 0
    failures = 0
    for k in range(times):
        victim = c.leader()
        popen = c.sup.procs[victim].popen
        if freeze and popen is not None:
            popen.send_signal(signal.SIGSTOP)
        else:
            c.sup.kill(victim, signal.SIGKILL)
        t0 = time.perf_counter()
        m0 = time.monotonic()
        others = [m for m in c.members if m != victim]
        done = False
        attempt = 0
        while not done and time.perf_counter() - t0 < timeout:
            base = c.http[others[attempt % len(others)]]
            attempt += 1
            method, url, kw = c.put(base, f"failover-{k}", b"x")
            data = kw.get("data")
            if "json" in kw:
                import json

                data = json.dumps(kw["json"]).encode()
            req = urllib.request.Request(url, data=data, method=method)
            a0 = time.perf_counter()
            try:
                with urllib.request.urlopen(req, timeout=1.0) as r:
                    done = r.status < 300
            except (urllib.error.URLError, OSError, TimeoutError):
                time.sleep(0.005)
            longest_attempt = max(longest_attempt, time.perf_counter() - a0)
        attempts_total += attempt
        if done:
            samples.append(time.perf_counter() - t0)
            changes = sorted(x for m in others for x in _role_changes(c, m, m0))
            campaigns = [t for t, role, _ in changes if role in ("pre-candidate", "candidate")]
            leaders = [(t, term) for t, role, term in changes if role == "leader"]
            if campaigns and leaders:
                phases["detect"].append(campaigns[0] - m0)
                phases["elect"].append(leaders[0][0] - campaigns[0])
                phases["commit"].append(m0 + samples[-1] - leaders[0][0])
                # a pre-candidate logs its current term; candidates the term they stand in
                terms = {term for _, role, term in changes if role in ("candidate", "leader")}
                elections_beyond_one += max(0, len(terms) - 1)
        else:
            failures += 1
        c.sup.kill(victim, signal.SIGKILL)  # (a no-op unless frozen)
        c.sup.restart(victim)
        c.sup.wait_until(f"{victim} ready", lambda v=victim: _ready(c, v), timeout=30)
    samples.sort()
    n = len(samples)
    out: dict[str, Any] = {
        "kills": times,
        "p50_ms": 1000 * statistics.median(samples) if n else None,
        "p99_ms": 1000 * samples[min(n - 1, int(n * 0.99))] if n else None,
        "max_ms": 1000 * samples[-1] if n else None,
        "failed": failures,
    }
    if phases["detect"]:
        for name, xs in phases.items():
            xs.sort()
            out[f"{name}_p50_ms"] = 1000 * statistics.median(xs)
            out[f"{name}_max_ms"] = 1000 * xs[-1]
        out["extra_elections"] = elections_beyond_one
        out["client_longest_attempt_ms"] = 1000 * longest_attempt
        out["client_attempts_per_kill"] = attempts_total / times
    return out


def _ready(c: Cluster, member: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(c.http[member] + c.ready_path, timeout=0.5) as r:
            return bool(r.status == 200)
    except OSError:
        return False


def _measure(
    start: Callable[[Supervisor], Cluster],
    clients: int,
    seconds: float,
    kills: int,
    availability: bool | None = None,
) -> dict[str, Any]:
    """Load, the system's own tool, failover; then (``availability`` not None: True for the
    quick shape) restart-to-leader and leader changes, idle and with the cores busy."""
    with Supervisor(prefix="novacron-bench-raft-") as sup:
        c = start(sup)
        c.leader(timeout=60)
        for m in c.members:
            sup.wait_until(f"{c.name} {m} ready", lambda m=m: _ready(c, m), timeout=60)
        out = asyncio.run(_load(c, clients, seconds, 256)) if seconds else {}
        if c.native is not None and seconds:
            out["native_tool"] = c.native(c, seconds)
        if kills:
            out["failover"] = failover(c, kills)
        if availability is not None:
            from benchmarks.raft_availability import availability as measure

            out["availability"] = measure(c, quick=availability)
        return out


def run(quick: bool = False) -> dict[str, Any]:
    clients, seconds = 64, (5.0 if quick else 20.0)
    kills = 5 if quick else 50
    print(
        f"  novacron: 3 nodes, {clients} clients, {seconds:.0f}s, then {kills} leader kills",
        flush=True,
    )
    ours = _measure(start_novacron, clients, seconds, kills, availability=quick)
    peers: dict[str, Any] = {}
    etcd = etcd_binary()
    if etcd:
        print(f"  etcd ({etcd}): same load, {kills} leader kills, availability", flush=True)
        peers["etcd"] = _measure(
            lambda s: start_etcd(s, etcd), clients, seconds, kills, availability=quick
        )
    else:
        peers["etcd"] = "not built: run `make k8s-bin` (builds etcd 3.6 from the Go module proxy)"
    print("  write path: our wire API beside etcd's own `benchmark put`", flush=True)
    from benchmarks.raft_wire import flatten, load_note, write_path

    wire_figures, wire_peers, wire_ratios = flatten(write_path(quick=quick))
    print("  pysyncobj: same load", flush=True)
    try:
        peers["pysyncobj"] = _measure(start_pysyncobj, clients, seconds, 0)
    except (RuntimeError, TimeoutError) as e:
        peers["pysyncobj"] = f"failed: {e}"
    figures = {k: v for k, v in ours.items() if k not in ("failover", "availability")}
    for k, v in ours.get("failover", {}).items():
        figures[f"failover_{k}"] = v
    for k, v in ours.get("availability", {}).items():
        figures[f"availability_{k}"] = v
    flat_peers: dict[str, Any] = {}
    ratios: dict[str, Any] = {}
    for name, res in peers.items():
        if not isinstance(res, dict):
            flat_peers[name] = res
            continue
        for k, v in res.items():
            if isinstance(v, dict):
                for k2, v2 in v.items():
                    flat_peers[f"{name}.{k}_{k2}"] = v2
            else:
                flat_peers[f"{name}.{k}"] = v
        if res.get("writes_per_s"):
            ratios[f"vs_{name}"] = ours["writes_per_s"] / res["writes_per_s"]
        if res.get("p99_ms") and ours.get("p99_ms"):
            ratios[f"p99_vs_{name}"] = ours["p99_ms"] / res["p99_ms"]
        theirs, mine = res.get("availability", {}), ours.get("availability", {})
        for row in ("restart_idle_polled_p50_ms", "restart_loaded_polled_p50_ms"):
            if theirs.get(row) and mine.get(row) is not None:
                ratios[f"{row}_vs_{name}"] = mine[row] / theirs[row]
    figures.update(wire_figures)
    flat_peers.update(wire_peers)
    ratios.update(wire_ratios)
    return result(
        "raft",
        figures,
        flat_peers,
        ratios,
        {
            "load": load_note(),
            "clients": clients,
            "seconds": seconds,
            "value_bytes": 256,
            "members": 3,
            "fsync": True,
            "kills": kills,
        },
    )


def failover_only(kills: int, runs: int, freeze: bool = False) -> list[dict[str, Any]]:
    """Our failover alone, ``runs`` times on a fresh 3-node cluster each."""
    out = []
    for r in range(runs):
        with Supervisor(prefix="novacron-bench-raft-") as sup:
            c = start_novacron(sup)
            c.leader(timeout=60)
            for m in c.members:
                sup.wait_until(f"novacron {m} ready", lambda c=c, m=m: _ready(c, m), timeout=60)
            res = failover(c, kills, freeze=freeze)
        print(f"  run {r + 1}: " + ", ".join(f"{k} {_fmt(v)}" for k, v in res.items()), flush=True)
        out.append(res)
    return out


def availability_only(quick: bool) -> dict[str, Any]:
    """Restart-to-leader and leader changes under load, ours beside etcd, no throughput."""
    ours = _measure(start_novacron, 0, 0.0, 0, availability=quick)["availability"]
    peers: dict[str, Any] = {}
    ratios: dict[str, Any] = {}
    etcd = etcd_binary()
    if etcd:
        theirs = _measure(lambda s: start_etcd(s, etcd), 0, 0.0, 0, availability=quick)
        peers = {f"etcd.{k}": v for k, v in theirs["availability"].items()}
        for row in ("restart_idle_polled_p50_ms", "restart_loaded_polled_p50_ms"):
            if theirs["availability"].get(row):
                ratios[f"{row}_vs_etcd"] = ours[row] / theirs["availability"][row]
    else:
        peers["etcd"] = "not built: run `make k8s-bin`"
    return result(
        "raft_availability",
        ours,
        peers,
        ratios,
        {"members": 3, "fsync": True, "quick": quick, "load_processes": ours["load_processes"]},
    )


def _fmt(v: Any) -> str:
    return f"{v:.0f}" if isinstance(v, float) else str(v)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.raft", description=__doc__)
    p.add_argument(
        "--only", choices=["failover", "availability", "write-path", "all"], default="all"
    )
    p.add_argument("--kills", type=int, default=50)
    p.add_argument("--runs", type=int, default=1, help="failover: repeat on fresh clusters")
    p.add_argument(
        "--freeze",
        action="store_true",
        help="failover: SIGSTOP the leader (no TCP close: the election-timeout path)",
    )
    p.add_argument("--quick", action="store_true")
    args = p.parse_args(argv)
    if args.only == "availability":
        from benchmarks.common import report

        report(availability_only(quick=args.quick))
        return 0
    if args.only == "write-path":
        from benchmarks.common import report, result
        from benchmarks.raft_wire import flatten, load_note, write_path

        before = load_note()
        res = write_path(quick=args.quick)
        figures, peers, ratios = flatten(res)
        params = {"seconds_per_row": res["seconds"], "members": 3, "fsync": True}
        params.update({"load_before": before, "load_after": load_note()})
        report(result("raft_write_path", figures, peers, ratios, params))
        return 0
    if args.only == "failover":
        how = "freezes (SIGSTOP)" if args.freeze else "kills (-9)"
        print(f"novacron failover: {args.kills} leader {how} x {args.runs} runs", flush=True)
        failover_only(args.kills, args.runs, args.freeze)
        return 0
    from benchmarks.common import report

    report(run(quick=args.quick))
    return 0


if __name__ == "__main__":
    sys.exit(main())
