"""``novacron demo``: a real multi-region federation on this machine, and a story told with it.

Regions x nodes real ``novacron node`` processes (the command the operator's StatefulSet runs)
on 127.0.x.y, each reading the same federation file the operator would render; each region is
one Raft group, every node also a replica of the federation's CRDT state. Every step prints
what it measured; ``--check`` turns failed expectations into a non-zero exit.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import sys
from pathlib import Path
from types import FrameType

import click
from rich.console import Console
from rich.live import Live

from novacron_core.demo import agents, conflicts, prometheus
from novacron_core.demo.federation import (
    Layout,
)
from novacron_core.demo.gateway import DemoGateway, region_killed_under_load
from novacron_core.demo.live import LiveView, hand_over
from novacron_core.demo.netns import RegionNetwork, probe
from novacron_core.demo.procs import Supervisor
from novacron_core.demo.story import Story
from novacron_core.federation.netem import demo_rtt


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
@click.option(
    "--prometheus",
    "prometheus_bin",
    metavar="BINARY",
    help="also start this Prometheus (e.g. `prometheus`, Debian's package) on "
    f"127.0.250.2:{prometheus.PORT}, scraping every node and the gateway "
    f"({prometheus.TARGETS_FILE} in the demo's dir) with the shipped rules; prints its URL",
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
    prometheus_bin: str | None,
) -> None:
    """Run a real multi-region NovaCron on this machine and tell its story, with figures."""
    tty = sys.stdout.isatty()
    out = Console(highlight=False, force_terminal=tty, no_color=not tty, width=None if tty else 160)
    prom_binary = shutil.which(prometheus_bin) if prometheus_bin else None
    if prometheus_bin and prom_binary is None:
        raise click.UsageError(f"--prometheus {prometheus_bin}: no such executable")
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
                gw = DemoGateway(sup, layout, address_octet)
                gw_cfg = gw.launch(sup.base)  # it finds the nodes as they come up
                targets = prometheus.write_targets(sup.base, layout, gw)
                prom: prometheus.DemoPrometheus | None = None
                if prom_binary:  # started first, it scrapes the whole story
                    prom = prometheus.DemoPrometheus(sup, prom_binary, address_octet)
                    prom.launch(targets)
                story.start()
                waited = gw.ready()
                story.gateway = gw
                story.say(
                    f"   gateway: `novacron gateway --config {gw_cfg}` on {gw.url}, every "
                    f"region's nodes behind it (+{waited:.1f}s); the clients' writes go through it"
                )
                if prom is not None:
                    prom.ready()
                    story.say(
                        f"   Prometheus: {prom.url} scrapes every node and the gateway "
                        f"(file_sd {targets}), the shipped rules loaded"
                    )
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
                    conflicts.chapter(story)
                    agents.run_chapter(story)
                    region_killed_under_load(story, story.gateway)
                if live is not None and view is not None:
                    live.stop()
                    view.poll_once()
                    out.print(view)
                    live = None
                _summary(story, out)
                if interactive:
                    hand_over(layout, out, view, net, targets, prom.url if prom else None)
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
        "conflict_heal_ms": ("conflict healed → one record+audit", "ms"),
        "gateway_failover_ms": ("region killed → served by the next", "ms"),
        "gateway_last_sent_ms": ("  last request sent to a dead node", "ms"),
        "rtt_error_ms_max": ("measured RTT vs matrix (max error)", "ms"),
        "agents_rtt_error_pct_max": ("agents' RTT vs the WAN (max error)", "%"),
        "agents_reroute_s": ("link cut → agents rerouted", "s"),
    }
    for k, (label, unit) in labels.items():
        if k in f:
            out.print(f"   {label:<34} {f[k]:8.2f} {unit}")
    if story.failures:
        out.print(f"[red]{len(story.failures)} expectation(s) failed[/red]")
    else:
        out.print("   [green]all expectations met[/green]")
