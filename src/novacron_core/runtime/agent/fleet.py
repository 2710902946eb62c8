"""One agent per region, as ``novacron demo`` runs them: start, read the measured RTT matrix,
and time the reroute after a link cut.

The demo (or a test) says where each agent listens and how to run a command in its region
(``exec_argv``: e.g. ``ip netns exec <region ns>``); the agents measure whatever WAN lies
between them. Reroute times come from the agents' own event timestamps (CLOCK_MONOTONIC,
one clock for every process and namespace of the machine), so how fast the caller polls does
not enter the figure::

    fleet = AgentFleet([FleetMember("us-east1", "198.18.16.21"), ...], exec_argv=net.exec_argv)
    with fleet:
        fleet.wait_converged(timeout=10)
        report = fleet.check_matrix(configured_rtt_ms, tolerance=0.10)
        cut_at = time.monotonic(); wan.cut_link("us-east1", "us-west1")
        took = fleet.wait_reroute("us-east1", "us-west1", via="europe-west1", since=cut_at)
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from novacron_core.runtime.agent.config import HTTP_PORT, PROBE_PORT

Fetch = Callable[[str, str], dict[str, Any]]  # (member, path) -> JSON body


@dataclass(frozen=True)
class FleetMember:
    region: str
    host: str  # the address the other agents reach it at (and its HTTP API)
    probe_port: int = PROBE_PORT
    http_port: int = HTTP_PORT
    name: str = ""  # default: the region (one agent per region)

    @property
    def member(self) -> str:
        return self.name or self.region


@dataclass
class MatrixCheck:
    pair: tuple[str, str]
    measured_ms: float | None
    expected_ms: float
    ok: bool


@dataclass
class AgentFleet:
    members: Sequence[FleetMember]
    exec_argv: Callable[[str, list[str]], list[str]] | None = None
    probe_interval_ms: int = 100
    extra_args: Sequence[str] = ()
    fetch: Fetch | None = None  # default: HTTP GET to host:http_port
    # how `novacron agent` is run (the demo: through novacron_core.cli, as the DaemonSet)
    command: Sequence[str] = (sys.executable, "-m", "novacron_core.runtime.agent.cli")
    preexec_fn: Callable[[], None] | None = None  # e.g. die with the parent (the demo)
    procs: dict[str, subprocess.Popen[str]] = field(default_factory=dict)

    def argv(self, m: FleetMember) -> list[str]:
        argv = [*self.command, "--name", m.member,
                "--region", m.region, "--listen", f"{m.host}:{m.probe_port}",
                "--http", f"{m.host}:{m.http_port}",
                "--probe-interval-ms", str(self.probe_interval_ms), *self.extra_args]  # fmt: skip
        for o in self.members:
            if o.member != m.member:
                argv += ["--peer", f"{o.member}={o.host}:{o.probe_port},{o.region}"]
        return self.exec_argv(m.region, argv) if self.exec_argv else argv

    def start(self, timeout: float = 30.0) -> None:
        for m in self.members:
            self.procs[m.member] = subprocess.Popen(
                self.argv(m), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                start_new_session=True, preexec_fn=self.preexec_fn,
            )  # fmt: skip
        deadline = time.monotonic() + timeout
        for m in self.members:
            while True:
                proc = self.procs[m.member]
                if proc.poll() is not None:
                    err = proc.stderr.read() if proc.stderr else ""
                    raise RuntimeError(f"agent {m.member} exited {proc.returncode}: {err}")
                try:
                    if self.get(m.member, "/healthz").get("ok"):
                        break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"agent {m.member} not healthy after {timeout}s")
                time.sleep(0.1)

    def stop(self) -> dict[str, int]:
        for p in self.procs.values():
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        codes = {}
        for name, p in self.procs.items():
            try:
                codes[name] = p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                codes[name] = p.wait()
        self.procs.clear()
        return codes

    def __enter__(self) -> AgentFleet:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ views

    def get(self, member: str, path: str) -> dict[str, Any]:
        if self.fetch is not None:
            return self.fetch(member, path)
        m = next(x for x in self.members if x.member == member)
        try:
            with urllib.request.urlopen(f"http://{m.host}:{m.http_port}{path}", timeout=3) as r:
                body: dict[str, Any] = json.loads(r.read())
                return body
        except urllib.error.HTTPError as e:
            return dict(json.loads(e.read() or b"{}"))

    def rtt_matrix(self) -> dict[tuple[str, str], float | None]:
        """(a, b) -> the RTT a measures to b (ms): the least of its last 16 probes (delays
        from busy hosts only add); None before any sample."""
        out: dict[tuple[str, str], float | None] = {}
        for m in self.members:
            peers = self.get(m.member, "/v1/topology")["peers"]
            for other, stats in peers.items():
                out[(m.member, other)] = stats.get("rtt_min_ms", stats["rtt_ms"])
        return out

    def check_matrix(
        self, expected: Mapping[tuple[str, str], float], tolerance: float = 0.10
    ) -> list[MatrixCheck]:
        """Each configured pair against what both its ends measured (within ``tolerance``,
        relative). ``expected`` is keyed by region pairs (either order)."""
        region = {m.member: m.region for m in self.members}
        measured = self.rtt_matrix()
        checks = []
        for (a, b), got in sorted(measured.items()):
            want = expected.get((region[a], region[b]), expected.get((region[b], region[a])))
            if want is None:
                continue
            ok = got is not None and abs(got - want) <= tolerance * want
            checks.append(MatrixCheck((a, b), got, want, ok))
        return checks

    def route(self, src: str, dst: str, qos: str = "critical") -> list[str] | None:
        routes = self.get(src, f"/v1/routes?dst={dst}&qos={qos}")["routes"]
        return routes[0]["path"] if routes else None

    def wait_converged(self, timeout: float = 15.0) -> bool:
        """Every agent has a route to every other and has heard every other's adverts."""
        want = {m.member for m in self.members}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            done = True
            for m in self.members:
                body = self.get(m.member, "/v1/routes?qos=critical")
                if {r["dst"] for r in body["routes"] if r["path"]} != want - {m.member}:
                    done = False
                    break
            if done:
                return True
            time.sleep(0.1)
        return False

    def wait_reroute(
        self, src: str, dst: str, via: str, since: float, timeout: float = 5.0
    ) -> float | None:
        """Seconds from ``since`` (time.monotonic() when the link was cut) to the agent at
        ``src`` moving its route to ``dst`` onto a path through ``via``; None if it did not
        within ``timeout``. Measured by the agent's own reroute event."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            body = self.get(src, "/v1/routes")
            for e in body["events"]:
                if (
                    e["kind"] == "reroute"
                    and e["dst"] == dst
                    and e["qos"] == "critical"
                    and e["at"] >= since
                    and e["new"]
                    and via in e["new"][1:-1]
                ):
                    return float(e["at"]) - since
            time.sleep(0.05)
        return None
