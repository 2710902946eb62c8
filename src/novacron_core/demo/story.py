"""The demo's story: each chapter does one thing to the federation and prints what it
measured (``novacron demo`` tells it; ``demo/cli.py`` is the command)."""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from typing import Any

from rich.console import Console

from novacron_core.demo import propagation
from novacron_core.demo.checks import kept_log, rtt_misses
from novacron_core.demo.federation import (
    ANTI_ENTROPY_S,
    GOSSIP_MS,
    PEER_PORT,
    Layout,
    NodeSpec,
    cluster,
    fed_has,
    get_json,
    post_json,
    write,
)
from novacron_core.demo.gateway import DemoGateway
from novacron_core.demo.netns import RegionNetwork, connect_rtt_samples
from novacron_core.demo.procs import Supervisor
from novacron_core.federation.netem import demo_rtt

RTT_SAMPLES, RTT_ROUNDS = 5, 4  # per pair: 5 connects a round, more rounds while off


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
        self.gateway: DemoGateway | None = None  # set: the client writes go through it

    # ------------------------------------------------------------ helpers

    def say(self, text: str) -> None:
        self.out.print(text, highlight=False)

    def expect(self, ok: bool, what: str) -> None:
        if ok:
            self.say(f"   [green]✓[/green] {what}")
        else:
            self.say(f"   [red]✗ expected: {what}[/red]")
            self.failures.append(what)

    def client_write(self, region: str, method: str, path: str, body: Any) -> Any:
        if self.gateway is not None:
            return self.gateway.write(region, method, path, body)
        return write(self.live(region), method, path, body)

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
        every other region: the matrix when the network delays, ~0 when the nodes do. Load
        only adds time to a sample, so the check judges the fastest of several, and pairs
        still off get more samples (up to ``RTT_ROUNDS`` x ``RTT_SAMPLES``); a missing delay
        stays far below the matrix however many (demo/checks.py)."""
        net, lay = self.net, self.layout
        assert net is not None
        delays = net.delays  # the network delays (netem or the userspace WAN)
        samples: dict[tuple[str, str], list[float]] = {}
        for _ in range(RTT_ROUNDS):
            wanted = set(rtt_misses(samples, pairs)) if samples else set(pairs)
            for i, a in enumerate(lay.regions):
                targets = {
                    f"{lay.in_region(b)[0].host}:{PEER_PORT}": b
                    for b in lay.regions[i + 1 :]
                    if (a, b) in wanted
                }
                if targets:
                    got = connect_rtt_samples(net.exec_argv(a, []), list(targets), RTT_SAMPLES)
                    for t, ms in got.items():
                        samples.setdefault((a, targets[t]), []).extend(ms)
            if not delays or not rtt_misses(samples, pairs):
                break
        if not samples:
            return
        measured = {ab: min(ms) for ab, ms in samples.items()}
        if delays:
            self.figures["rtt_error_ms_max"] = max(
                abs(ms - pairs[ab]) for ab, ms in measured.items()
            )
        counts = sorted({len(ms) for ms in samples.values()})
        how_many = f"{counts[0]}" if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"
        self.say(
            f"   RTT measured between the namespaces (TCP connect, fastest of {how_many}): "
            + ", ".join(
                f"{a}↔{b} {ms:.1f} ms" + (f" (matrix {pairs[(a, b)]:.0f})" if delays else "")
                for (a, b), ms in measured.items()
            )
        )
        if delays:
            self.expect(
                not rtt_misses(samples, pairs),
                "RTT within 10% (or 5 ms) of the matrix",
            )
        else:
            self.say("   (no delay in the network: the nodes add RTT/2 to each federation message)")

    def create_vms(self) -> None:
        self.say("\n[bold]1. Create and power on a VM in each region, at its home region[/bold]")
        for r in self.layout.regions:
            vm = f"web-{r}"
            t0 = time.monotonic()
            self.client_write(
                r,
                "POST",
                "/v1/vms",
                {
                    "id": vm,
                    "name": vm,
                    "spec": {"cpus": 2, "memory_mib": 2048, "image": "debian-12"},
                },
            )
            t1 = time.monotonic()
            rec = self.client_write(r, "POST", f"/v1/vms/{vm}/power", {"state": "on"})
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
        self.client_write(r, "POST", f"/v1/vms/{vm}/power", {"state": "off"})
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
            self.client_write(
                r,
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
        recovered = first.get("recovered") or {}
        self.say(
            f"   before the crash: commit {before.get('commit')}; 20 VMs written meanwhile "
            f"(leader commit {target})"
        )
        self.say(
            f"   restarted: read back from disk at start: log to index "
            f"{recovered.get('last_index')} (term {recovered.get('last_term')}, snapshot at "
            f"{recovered.get('snapshot_index')}); first answer after "
            f"{1000 * (total - took):.0f} ms; commit caught up to ≥ {target} "
            f"{1000 * total:.0f} ms after restart"
        )
        self.expect(
            kept_log(before, first),
            "the restarted node kept its log (read back from disk at start, before catch-up)",
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
        self.client_write(
            cut,
            "POST",
            "/v1/vms",
            {
                "id": vm_cut,
                "name": vm_cut,
                "spec": {"cpus": 4, "memory_mib": 4096, "image": "debian-12"},
            },
        )
        self.client_write(cut, "POST", f"/v1/vms/{vm_cut}/power", {"state": "on"})
        t_w = time.monotonic() - t0
        self.say(
            f"   {cut} still writes its own VMs: {vm_cut} created and powered on "
            f"in {1000 * t_w:.0f} ms"
        )
        self.client_write(
            others[0],
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

    # ------------------------------------------------------------ propagation

    def propagation(
        self, home: str, vm: str, version: int, acked: float, timeout: float = 15.0
    ) -> dict[str, float]:
        return propagation.seen_in_regions(self, home, vm, version, acked, timeout)

    def measure_propagation(self, rounds: int = 5) -> None:
        propagation.measure(self, rounds)


def _federated(n: NodeSpec) -> bool:
    st = get_json(n.url + "/v1/federation/status")
    return isinstance(st, dict) and st.get("member") is True and "replica" in st
