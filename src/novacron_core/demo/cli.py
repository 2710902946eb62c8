"""``novacron demo``: a real multi-region federation on this machine, and a story told with it.

Regions x nodes real ``novacron node`` processes (the command the operator's StatefulSet runs)
on 127.0.x.y, each reading the same federation file the operator would render; each region is
one Raft group, every node also a replica of the federation's CRDT state. Every step prints
what it measured; ``--check`` turns failed expectations into a non-zero exit.
"""

from __future__ import annotations

import contextlib
import signal
import statistics
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from functools import partial
from pathlib import Path
from types import FrameType
from typing import Any

import click
from rich import box
from rich.console import Console
from rich.live import Live
from rich.table import Table

from novacron_core.demo.federation import (
    ANTI_ENTROPY_S,
    GOSSIP_MS,
    PEER_PORT,
    Layout,
    NodeSpec,
    cluster,
    fed_has,
    fed_record,
    get_json,
    post_json,
    write,
)
from novacron_core.demo.netns import RegionNetwork, connect_rtt_ms, probe
from novacron_core.demo.procs import Supervisor
from novacron_core.federation.netem import demo_rtt


class Story:
    def __init__(
        self,
        sup: Supervisor,
        layout: Layout,
        out: Console,
        election_ms: int,
        network: str = "network: in-transport delay",
        net: RegionNetwork | None = None,
    ) -> None:
        self.sup, self.layout, self.out, self.election_ms = sup, layout, out, election_ms
        self.network, self.net = network, net
        self.cut: list[str] = []  # the regions partitioned off now
        self.failures: list[str] = []
        self.figures: dict[str, float] = {}

    # ------------------------------------------------------------ helpers

    def say(self, text: str) -> None:
        self.out.print(text, highlight=False)

    def expect(self, ok: bool, what: str) -> None:
        if ok:
            self.say(f"   [green]✓[/green] {what}")
        else:
            self.say(f"   [red]✗ expected: {what}[/red]")
            self.failures.append(what)

    def live(self, region: str) -> list[NodeSpec]:
        return [n for n in self.layout.in_region(region) if self.sup.procs[n.name].running]

    def leader_of(self, region: str) -> tuple[NodeSpec, dict[str, Any]] | None:
        for n in self.live(region):
            st = cluster(n)
            if st and st.get("role") == "leader":
                return n, st
        return None

    def wait(self, what: str, cond: Callable[[], bool], timeout: float = 30.0) -> float:
        def checked() -> bool:
            if self.net is not None:
                self.net.check()  # a dead WAN would look like a partition: fail, saying so
            return cond()

        return self.sup.wait_until(what, checked, timeout)

    def _has_leader(self, region: str) -> bool:
        return self.leader_of(region) is not None

    def fed_node(self, region: str) -> NodeSpec:
        return self.live(region)[0]

    # ------------------------------------------------------------ steps

    def start(self) -> None:
        lay = self.layout
        self.say(
            f"[bold]Starting {len(lay.nodes)} nodes: {len(lay.regions)} regions x "
            f"{len(lay.in_region(lay.regions[0]))}[/bold] (data in {self.sup.base})"
        )
        self.say(f"   {self.network}")
        pairs = demo_rtt(lay.regions)
        if pairs:
            self.say(
                "   RTT (cockroach demo --global matrix): "
                + ", ".join(f"{a}↔{b} {ms:.0f} ms" for (a, b), ms in pairs.items())
            )
        fed_file = lay.write_federation_file(self.sup.base / "federation.json")
        self.say(
            f"   every node runs `novacron node --federation-file {fed_file}` "
            f"(gossip every {GOSSIP_MS} ms, anti-entropy every {ANTI_ENTROPY_S} s)"
        )
        t0 = time.monotonic()
        for n in lay.nodes:
            argv = lay.argv(n, str(self.sup.dir_for(n.name)), self.election_ms, fed_file)
            self.sup.start(n.name, argv)
        for r in lay.regions:
            took = self.wait(f"a leader in {r}", partial(self._has_leader, r), 60)
            found = self.leader_of(r)
            assert found is not None
            self.say(
                f"   {r}: leader {found[0].name} (term {found[1]['term']}) "
                f"after {time.monotonic() - t0:.1f}s (+{took:.1f}s)"
            )
        for n in lay.nodes:
            self.wait(f"{n.name} federated", partial(_federated, n), 30)
        self.figures["startup_s"] = time.monotonic() - t0
        self.say(f"   federation up in {self.figures['startup_s']:.1f}s")
        if self.net is not None:
            self.measure_rtt(pairs)

    def measure_rtt(self, pairs: dict[tuple[str, str], float]) -> None:
        """TCP connect time (one round trip) from inside each region's namespace to a node of
        every other region: the matrix when the network delays, ~0 when the nodes do."""
        net, lay = self.net, self.layout
        assert net is not None
        delays = net.delays  # the network delays (netem or the userspace WAN)
        measured: dict[tuple[str, str], float] = {}
        for i, a in enumerate(lay.regions):
            targets = {f"{lay.in_region(b)[0].host}:{PEER_PORT}": b for b in lay.regions[i + 1 :]}
            if targets:
                got = connect_rtt_ms(net.exec_argv(a, []), list(targets))
                measured.update({(a, targets[t]): ms for t, ms in got.items()})
        if not measured:
            return
        if delays:
            self.figures["rtt_error_ms_max"] = max(
                abs(ms - pairs[ab]) for ab, ms in measured.items()
            )
        self.say(
            "   RTT measured between the namespaces (TCP connect, median of 5): "
            + ", ".join(
                f"{a}↔{b} {ms:.1f} ms" + (f" (matrix {pairs[(a, b)]:.0f})" if delays else "")
                for (a, b), ms in measured.items()
            )
        )
        if delays:
            self.expect(
                all(
                    abs(ms - pairs[ab]) <= max(5.0, 0.1 * pairs[ab]) for ab, ms in measured.items()
                ),
                "RTT within 10% (or 5 ms) of the matrix",
            )
        else:
            self.say("   (no delay in the network: the nodes add RTT/2 to each federation message)")

    def create_vms(self) -> None:
        self.say("\n[bold]1. Create and power on a VM in each region, at its home region[/bold]")
        for r in self.layout.regions:
            vm = f"web-{r}"
            t0 = time.monotonic()
            write(
                self.live(r),
                "POST",
                "/v1/vms",
                {
                    "id": vm,
                    "name": vm,
                    "spec": {"cpus": 2, "memory_mib": 2048, "image": "debian-12"},
                },
            )
            t1 = time.monotonic()
            rec = write(self.live(r), "POST", f"/v1/vms/{vm}/power", {"state": "on"})
            t2 = time.monotonic()
            self.say(
                f"   {vm}: created in {1000 * (t1 - t0):.0f} ms, powered on in "
                f"{1000 * (t2 - t1):.0f} ms (Raft commit in {r}; home_region={rec['home_region']})"
            )
            self.expect(rec["power"] == "on" and rec["home_region"] == r, f"{vm} on, homed in {r}")
            seen = self.propagation(r, vm, rec["version"], t2)
            if seen:
                self.say(
                    "     readable (powered on) "
                    + ", ".join(f"in {o} after {1000 * t:.0f} ms" for o, t in sorted(seen.items()))
                )
        if len(self.layout.regions) > 1:
            self.measure_propagation()

    def propagation(
        self, home: str, vm: str, version: int, acked: float, timeout: float = 15.0
    ) -> dict[str, float]:
        """Seconds from ``acked`` (the write's answer) until a node of each other region
        serves ``vm`` at ``version`` or later from its federation replica; each region is
        polled every 2 ms by its own thread, so the figure is not a poll interval."""
        seen: dict[str, float] = {}
        lock = threading.Lock()

        def poll(region: str, node: NodeSpec) -> None:
            deadline = acked + timeout
            while time.monotonic() < deadline:
                rec = fed_record(node, vm)
                if rec is not None and int(rec.get("version", 0)) >= version:
                    with lock:
                        seen[region] = time.monotonic() - acked
                    return
                time.sleep(0.002)

        threads = [
            threading.Thread(target=poll, args=(o, self.fed_node(o)), daemon=True)
            for o in self.layout.regions
            if o != home
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout + 1)
        missing = [o for o in self.layout.regions if o != home and o not in seen]
        if missing:
            raise TimeoutError(f"{vm} v{version} not readable in {', '.join(missing)} in time")
        return seen

    def measure_propagation(self, rounds: int = 5) -> None:
        """Power each region's VM off and on ``rounds`` times; per region pair the time
        until the other region serves the new version, against the link's one-way latency,
        and the federation messages every node sent per update."""
        lay = self.layout
        self.say(
            f"   propagation of {rounds} updates per region "
            "(commit → eager push to one node per region → relayed in that region):"
        )
        before = self._fed_counters()
        samples: dict[tuple[str, str], list[float]] = {}
        for i in range(rounds):
            for r in lay.regions:
                state = "off" if i % 2 == 0 else "on"
                rec = write(self.live(r), "POST", f"/v1/vms/web-{r}/power", {"state": state})
                acked = time.monotonic()
                for o, t in self.propagation(r, f"web-{r}", rec["version"], acked).items():
                    samples.setdefault(tuple(sorted((r, o))), []).append(t)  # type: ignore[arg-type]
        after = self._fed_counters()
        rtt = demo_rtt(lay.regions)
        worst_p50 = worst_max = 0.0
        for (a, b), ts in sorted(samples.items()):
            one_way = rtt.get((a, b), rtt.get((b, a), 0.0)) / 2
            p50, top = 1000 * statistics.median(ts), 1000 * max(ts)
            worst_p50, worst_max = max(worst_p50, p50 - one_way), max(worst_max, top - one_way)
            self.say(
                f"     {a}↔{b}: p50 {p50:.0f} ms, max {top:.0f} ms over {len(ts)} updates "
                f"(one-way {one_way:.0f} ms: +{p50 - one_way:.0f} / +{top - one_way:.0f})"
            )
            self.expect(
                p50 <= one_way + 30 and top <= one_way + 80,
                f"{a}↔{b} p50 ≤ one-way + 30 ms and max ≤ one-way + 80 ms",
            )
        all_ts = [t for ts in samples.values() for t in ts]
        self.figures["propagation_ms_p50"] = 1000 * statistics.median(all_ts)
        self.figures["propagation_ms_max"] = 1000 * max(all_ts)
        self.figures["propagation_over_one_way_ms_p50"] = worst_p50
        self.figures["propagation_over_one_way_ms_max"] = worst_max
        updates = after[1] - before[1]
        if updates > 0:
            per = {k: (after[2].get(k, 0) - before[2].get(k, 0)) / updates for k in after[2]}
            total = sum(per.values())
            self.figures["federation_messages_per_update"] = total
            self.say(
                f"   federation messages per update: {total:.1f} "
                f"({updates} updates by every region's leader, heartbeat marks included; "
                + ", ".join(f"{k} {v:.1f}" for k, v in sorted(per.items()) if v >= 0.05)
                + f"; {len(lay.nodes)} replicas)"
            )

    def _fed_counters(self) -> tuple[float, int, dict[str, int]]:
        """(when, updates published, federation messages sent by type) over every node."""
        published, sent = 0, Counter[str]()
        for n in self.layout.nodes:
            st = (
                get_json(n.url + "/v1/federation/status")
                if self.sup.procs[n.name].running
                else None
            )
            if isinstance(st, dict):
                published += int(st.get("published", 0)) + int(st.get("heartbeats", 0))
                sent.update(st.get("messages_sent") or {})
        return time.monotonic(), published, dict(sent)

    def kill_leader(self) -> None:
        r = self.layout.regions[0]
        found = self.leader_of(r)
        assert found is not None
        victim, st = found
        self.say(f"\n[bold]2. kill -9 {r}'s leader {victim.name} (term {st['term']})[/bold]")
        t0 = time.monotonic()
        self.sup.kill(victim.name)
        self.wait(f"a new leader in {r}", lambda: self.leader_of(r) is not None, 30)
        t_lead = time.monotonic() - t0
        new = self.leader_of(r)
        assert new is not None
        vm = f"web-{r}"
        write(self.live(r), "POST", f"/v1/vms/{vm}/power", {"state": "off"})
        t_commit = time.monotonic() - t0
        self.figures["failover_leader_s"], self.figures["failover_commit_s"] = t_lead, t_commit
        self.say(
            f"   new leader {new[0].name} (term {new[1]['term']}) after {1000 * t_lead:.0f} ms; "
            f"next commit (power off {vm}) after {1000 * t_commit:.0f} ms"
        )
        self.expect(
            new[0].name != victim.name and new[1]["term"] > st["term"], "a new leader, higher term"
        )
        self.sup.restart(victim.name)
        took = self.wait(
            f"{victim.name} to rejoin",
            lambda: (cluster(victim) or {}).get("commit", -1) >= new[1]["commit"],
            30,
        )
        self.say(
            f"   restarted {victim.name}: rejoined as follower, caught up in {1000 * took:.0f} ms"
        )

    def crash_restart(self) -> None:
        r = self.layout.regions[1 % len(self.layout.regions)]
        found = self.leader_of(r)
        assert found is not None
        victim = next(n for n in self.live(r) if n.name != found[0].name)
        before = cluster(victim) or {}
        self.say(
            f"\n[bold]3. kill -9 {victim.name} (a follower), write while it is down, "
            "restart it[/bold]"
        )
        self.sup.kill(victim.name)
        for i in range(20):
            vm = f"batch-{r}-{i}"
            write(
                self.live(r),
                "POST",
                "/v1/vms",
                {"id": vm, "name": vm, "spec": {"cpus": 1, "memory_mib": 512, "image": "alpine"}},
            )
        lead = self.leader_of(r)
        assert lead is not None
        target = int(lead[1]["commit"])
        t0 = time.monotonic()
        self.sup.restart(victim.name)
        self.wait(f"{victim.name} to answer", lambda: cluster(victim) is not None, 30)
        first = cluster(victim) or {}
        took = self.wait(
            f"{victim.name} to catch up",
            lambda: (cluster(victim) or {}).get("commit", -1) >= target,
            30,
        )
        total = time.monotonic() - t0
        self.figures["restart_catchup_s"] = total
        self.say(
            f"   before the crash: commit {before.get('commit')}; 20 VMs written meanwhile "
            f"(leader commit {target})"
        )
        self.say(
            f"   restarted: durable log read back to index {first.get('last_index')} "
            f"(first answer after {1000 * (total - took):.0f} ms), commit caught up to ≥ {target} "
            f"{1000 * total:.0f} ms after restart"
        )
        self.expect(
            int(first.get("last_index", 0)) >= int(before.get("commit", 0)),
            "the restarted node kept its log (recovered from disk, not from scratch)",
        )

    def partition(self) -> None:
        lay = self.layout
        cut = lay.regions[-1]
        others = [r for r in lay.regions if r != cut]
        how = (
            "the nodes' link rules drop"
            if self.net is None
            else "the WAN drops every packet between them"
            if self.net.wan is not None
            else "tc drops every packet between them"
        )
        self.say(f"\n[bold]4. Partition {cut} from {', '.join(others)} ({how})[/bold]")
        self.set_partitioned([cut])
        vm_cut, vm_other = f"islanded-{cut}", f"mainland-{others[0]}"
        t0 = time.monotonic()
        write(
            self.live(cut),
            "POST",
            "/v1/vms",
            {
                "id": vm_cut,
                "name": vm_cut,
                "spec": {"cpus": 4, "memory_mib": 4096, "image": "debian-12"},
            },
        )
        write(self.live(cut), "POST", f"/v1/vms/{vm_cut}/power", {"state": "on"})
        t_w = time.monotonic() - t0
        self.say(
            f"   {cut} still writes its own VMs: {vm_cut} created and powered on "
            f"in {1000 * t_w:.0f} ms"
        )
        write(
            self.live(others[0]),
            "POST",
            "/v1/vms",
            {
                "id": vm_other,
                "name": vm_other,
                "spec": {"cpus": 1, "memory_mib": 1024, "image": "alpine"},
            },
        )
        readable = fed_has(self.fed_node(cut), f"web-{others[0]}")
        self.expect(
            readable, f"{others[0]}'s VMs stay readable in {cut} (its last replicated state)"
        )
        time.sleep(1.0)
        leaked = fed_has(self.fed_node(others[0]), vm_cut) or fed_has(self.fed_node(cut), vm_other)
        self.expect(not leaked, "nothing crosses the partition (checked after 1 s)")
        self.vm_cut, self.vm_other = vm_cut, vm_other

    def set_partitioned(self, cut: list[str]) -> None:
        self.cut = list(cut)
        if self.net is not None:
            self.net.set_partitioned(cut)  # in the network: tc filters in each namespace
            return
        for n in self.layout.nodes:
            if self.sup.procs[n.name].running:
                post_json(n.url + "/v1/federation/netem", {"partitioned": cut})

    def region_lag(self, reader: NodeSpec, region: str) -> float | None:
        st = get_json(reader.url + "/v1/federation/status")
        lag = (st or {}).get("region_lag_s", {}).get(region)
        return float(lag) if lag is not None else None

    def heal(self) -> None:
        lay = self.layout
        cut, others = lay.regions[-1], lay.regions[:-1]
        before = self.region_lag(self.fed_node(others[0]), cut)
        if before is not None:
            self.say(
                f"   before healing, {others[0]} is {before:.1f} s behind {cut} "
                "(age of the newest heartbeat it holds from there)"
            )
        self.say("\n[bold]5. Heal the partition: gossip and anti-entropy catch up[/bold]")
        t0 = time.monotonic()
        self.set_partitioned([])
        nodes_cut = self.live(cut)
        nodes_other = [n for r in others for n in self.live(r)]
        self.wait(
            "both sides to see each other's partition-time writes",
            lambda: (
                all(fed_has(n, self.vm_cut) for n in nodes_other)
                and all(fed_has(n, self.vm_other) for n in nodes_cut)
            ),
            30,
        )
        took = time.monotonic() - t0
        self.figures["heal_catchup_ms"] = 1000 * took
        self.say(f"   every node of every region has both VMs {1000 * took:.0f} ms after healing")
        if self.net is not None and self.net.wan is not None:
            self.say(f"   the userspace WAN so far: {self.net.wan_stats()} packets")
        counts = {
            n.name: len((get_json(n.url + "/v1/federation/vms") or {}).get("vms", []))
            for n in lay.nodes
        }
        self.wait(
            "all replicas to converge",
            lambda: (
                len(
                    {
                        len((get_json(n.url + "/v1/federation/vms") or {}).get("vms", []))
                        for n in lay.nodes
                    }
                )
                == 1
            ),
            30,
        )
        counts = {
            n.name: len((get_json(n.url + "/v1/federation/vms") or {}).get("vms", []))
            for n in lay.nodes
        }
        reader = self.fed_node(others[0])
        self.wait(
            f"{others[0]}'s lag behind {cut} to fall",
            lambda: (self.region_lag(reader, cut) or 99.0) < 1.0,
            15,
        )
        after = self.region_lag(reader, cut) or 0.0
        self.say(f"   after healing: {others[0]} is {after:.2f} s behind {cut}")
        self.expect(
            len(set(counts.values())) == 1,
            f"all {len(counts)} replicas hold the same {next(iter(counts.values()))} VM records",
        )


def _federated(n: NodeSpec) -> bool:
    st = get_json(n.url + "/v1/federation/status")
    return isinstance(st, dict) and st.get("member") is True and "replica" in st


class LiveView:
    """A rich table of every node, refreshed from a background poller (TTY only)."""

    def __init__(self, layout: Layout, sup: Supervisor, story: Story | None = None) -> None:
        self.layout, self.sup, self.story = layout, sup, story
        self.rows: dict[str, dict[str, Any]] = {}
        self.prev: dict[str, tuple[float, int]] = {}
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        while not self.stop.is_set():
            self.poll_once()
            self.stop.wait(0.5)

    def poll_once(self) -> None:
        with self.lock:
            for n in self.layout.nodes:
                p = self.sup.procs.get(n.name)
                st = cluster(n) if p is not None and p.running else None
                fed = get_json(n.url + "/v1/federation/status") if st else None
                row: dict[str, Any] = {"up": st is not None}
                if st:
                    now, commit = time.monotonic(), int(st["commit"])
                    t, c = self.prev.get(n.name, (now, commit))
                    row.update(st, rate=(commit - c) / (now - t) if now > t else 0.0)
                    self.prev[n.name] = (now, commit)
                if fed:
                    parts = fed["partitioned"]
                    if self.story is not None and self.story.net is not None:
                        parts = self.story.cut  # in tc, not in the node's own switch
                    cut = [r for r in parts if r != n.region] or (
                        ["other regions"] if n.region in parts else []
                    )
                    lags = fed.get("region_lag_s") or {}
                    row.update(vms=fed["vms"], cut=cut)
                    if lags:
                        row["lag"] = max(lags.values())
                self.rows[n.name] = row

    def __rich__(self) -> Table:
        t = Table(title="NovaCron local federation", box=box.SIMPLE_HEAD, padding=(0, 1))
        for c in ("node", "role", "term", "commit", "rate/s", "VMs", "lag", "cut off"):
            t.add_column(c, no_wrap=True)
        for n in self.layout.nodes:
            row = self.rows.get(n.name, {})
            if not row.get("up"):
                t.add_row(n.name, "[red]down[/red]", *["-"] * 6)
                continue
            role = str(row.get("role", "?"))
            t.add_row(
                n.name,
                f"[bold green]{role}[/bold green]" if role == "leader" else role,
                str(row.get("term")),
                str(row.get("commit")),
                f"{max(0.0, row.get('rate', 0.0)):.1f}",
                str(row.get("vms", "-")),
                f"{row['lag']:.2f} s" if "lag" in row else "-",
                ",".join(row.get("cut", [])) or "-",
            )
        return t


def _interactive(
    layout: Layout, out: Console, view: LiveView | None, net: RegionNetwork | None = None
) -> None:
    out.print("\n[bold]The federation keeps running. Explore it:[/bold]")
    for r in layout.regions:
        for n in layout.in_region(r):
            out.print(
                f"   {n.name:<18} {n.url}  (metrics {n.url}/metrics, "
                f"federation {n.url}/v1/federation/vms)"
            )
    n0 = layout.nodes[0]
    out.print("\n   Try:")
    out.print(f"     curl {n0.url}/v1/cluster")
    out.print(f"     novacron vms list --url {n0.url}")
    out.print(f"     novacron vms create db-1 --url {n0.url}")
    out.print(
        f"     novacron vms get db-1 --federation --url {layout.nodes[-1].url}"
        f"   # read in {layout.nodes[-1].region}"
    )
    out.print(f"     curl {layout.nodes[-1].url}/v1/federation/vms")
    out.print(f"     curl {layout.nodes[-1].url}/v1/federation/status")
    out.print(f"     novacron status --url {n0.url} --url {layout.nodes[1].url}")
    if net is not None and net.plan is not None:
        ns = net.plan.ns(0)
        out.print(f"     ip netns exec {ns} ip addr show eth0   # {layout.regions[0]}'s network")
        out.print(f"     tc -n {ns} -s qdisc show dev eth0       # its per-region classes")
    out.print("\n   Ctrl-C stops every node and removes the temporary data.")
    if view is None:
        while True:
            time.sleep(3600)
    with Live(view, console=out, refresh_per_second=2, transient=True):
        while True:
            time.sleep(3600)


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


@click.command("demo")
@click.option(
    "--regions",
    type=click.IntRange(1, 9),
    default=3,
    show_default=True,
    help="us-east1, us-west1, europe-west1, then r4, r5...",
)
@click.option("--nodes", type=click.IntRange(3, 9), default=3, show_default=True, help="per region")
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False),
    help="keep data here (default: a temp dir, removed)",
)
@click.option("--interactive", is_flag=True, help="keep the federation running until Ctrl-C")
@click.option("--check", is_flag=True, help="exit non-zero when a step's expectation fails")
@click.option("--election-timeout-ms", type=int, default=400, show_default=True)
@click.option(
    "--network",
    type=click.Choice(["auto", "netns", "transport"]),
    default="auto",
    show_default=True,
    help="netns: a network namespace per region, delays and partitions in the network (tc "
    "netem, or a userspace WAN where the kernel has no netem; root); "
    "transport: the nodes delay and drop federation messages themselves (--demo-link-rules; "
    "unprivileged); "
    "auto: netns when it works here",
)
@click.option(
    "--address-octet",
    type=click.IntRange(0, 254),
    default=0,
    hidden=True,
    help="nodes listen on 127.OCTET.region.node (tests use another octet)",
)
def demo_command(
    regions: int,
    nodes: int,
    data_dir: str | None,
    interactive: bool,
    check: bool,
    election_timeout_ms: int,
    network: str,
    address_octet: int,
) -> None:
    """Run a real multi-region NovaCron on this machine and tell its story, with figures."""
    tty = sys.stdout.isatty()
    out = Console(highlight=False, force_terminal=tty, no_color=not tty, width=None if tty else 160)
    mode, delay, line = _network_mode(network)
    old = signal.signal(signal.SIGTERM, _raise_interrupt)
    # Ctrl-C must stop the federation even when we were started with SIGINT ignored (a shell
    # starts background jobs that way, and Python then never raises KeyboardInterrupt).
    old_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    live: Live | None = None
    view: LiveView | None = None
    story: Story | None = None
    crashed = ""
    try:
        if data_dir and Path(data_dir).exists() and any(Path(data_dir).iterdir()):
            raise click.UsageError(f"--data-dir {data_dir} is not empty: give a new directory")
        with contextlib.ExitStack() as stack:
            net: RegionNetwork | None = None
            if mode == "netns":
                names = Layout(regions, nodes).regions
                net = stack.enter_context(RegionNetwork(names, demo_rtt(names), delay, nodes))
                plan = net.plan
                assert plan is not None
                layout = Layout(
                    regions,
                    nodes,
                    addr=plan.node_addr,
                    fed_delay="network" if net.delays else "transport",
                    wrap=net.exec_argv,
                )
                line += (
                    f"\n   a namespace per region ({plan.prefix}-REGION), a /24 each in "
                    f"{plan.block}, bridged in the root namespace ({plan.bridge})"
                )
            else:
                layout = Layout(regions, nodes, address_octet)
                busy = layout.busy_addresses()
                if busy:
                    raise click.ClickException(
                        f"{busy[0]} is already in use (another `novacron demo` running?); "
                        "stop it first"
                    )
            sup = stack.enter_context(Supervisor(data_dir))
            story = Story(sup, layout, out, election_timeout_ms, line, net)
            try:
                story.start()
                if tty:
                    view = LiveView(layout, sup, story)
                    view.thread.start()
                    live = Live(view, console=out, refresh_per_second=2, transient=True)
                    live.start()
                    story.out = live.console
                story.create_vms()
                story.kill_leader()
                if len(layout.regions) >= 2:
                    story.crash_restart()
                    story.partition()
                    story.heal()
                if live is not None and view is not None:
                    live.stop()
                    view.poll_once()
                    out.print(view)
                    live = None
                _summary(story, out)
                if interactive:
                    _interactive(layout, out, view, net)
            except KeyboardInterrupt:
                out.print("\ninterrupted: stopping every node…")
            except Exception as e:  # a step that could not finish: say why, then clean up
                crashed = f"{type(e).__name__}: {e}"
                out.print(f"[red]demo step failed: {crashed}[/red]")
            finally:
                if live is not None:
                    live.stop()
                if view is not None:
                    view.stop.set()
                    view.thread.join(2)
                out.print(
                    "stopping nodes"
                    + ("" if data_dir else " and removing the temporary data")
                    + (" and the network namespaces" if mode == "netns" else "")
                )
    finally:
        signal.signal(signal.SIGTERM, old)
        signal.signal(signal.SIGINT, old_int)
    if crashed or (check and story is not None and story.failures):
        raise SystemExit(1)


def _network_mode(asked: str) -> tuple[str, str, str]:
    """(mode, who delays, the line the demo prints): netns when asked or when auto finds it
    works here (tried on a scratch namespace), else the nodes' own link rules."""
    transport = (
        "network: in-transport delay ({}): one-way delay = RTT/2 on each node's federation "
        "messages (--demo-link-rules)"
    )
    if asked == "transport":
        return "transport", "transport", transport.format("--network transport")
    found = probe()
    if not found.ok:
        if asked == "netns":
            raise click.ClickException(f"--network netns is not possible here: {found.why}")
        return "transport", "transport", transport.format(found.why)
    if found.delay == "netem":
        line = "network: netns + tc netem (root): one-way delay = RTT/2 per region pair"
    elif found.delay == "wan":
        line = (
            f"network: netns + userspace WAN (root; {found.why}): every packet between regions "
            "is held RTT/2 one way by a forwarding process, which also makes the partitions"
        )
    else:
        line = (
            "network: netns (root), partitions by tc; delay = RTT/2 on each node's federation "
            "messages "
            f"({found.why})"
        )
    return "netns", found.delay, line


def _summary(story: Story, out: Console) -> None:
    f = story.figures
    out.print("\n[bold]Figures[/bold]")
    labels = {
        "startup_s": ("federation start-up", "s"),
        "propagation_ms_p50": ("cross-region propagation (p50)", "ms"),
        "propagation_ms_max": ("cross-region propagation (max)", "ms"),
        "propagation_over_one_way_ms_p50": ("  p50 above one-way, worst pair", "ms"),
        "propagation_over_one_way_ms_max": ("  max above one-way, worst pair", "ms"),
        "federation_messages_per_update": ("federation messages per update", ""),
        "failover_leader_s": ("leader killed → new leader", "s"),
        "failover_commit_s": ("leader killed → next commit", "s"),
        "restart_catchup_s": ("kill -9 + restart → caught up", "s"),
        "heal_catchup_ms": ("partition healed → caught up", "ms"),
        "rtt_error_ms_max": ("measured RTT vs matrix (max error)", "ms"),
    }
    for k, (label, unit) in labels.items():
        if k in f:
            out.print(f"   {label:<34} {f[k]:8.2f} {unit}")
    if story.failures:
        out.print(f"[red]{len(story.failures)} expectation(s) failed[/red]")
    else:
        out.print("   [green]all expectations met[/green]")
