"""The live table of every node while the demo runs (rich, only on a TTY), and the
interactive hand-over after the story."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.live import Live
from rich.table import Table

from novacron_core.demo.federation import (
    Layout,
    cluster,
    get_json,
)
from novacron_core.demo.netns import RegionNetwork
from novacron_core.demo.procs import Supervisor
from novacron_core.demo.story import Story


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
                    parts = fed.get("partitioned", [])
                    if self.story is not None and self.story.net is not None:
                        parts = self.story.cut  # in tc, not in the node's own switch
                    cut = [r for r in parts if r != n.region] or (
                        ["other regions"] if n.region in parts else []
                    )
                    lags = fed.get("region_lag_s") or {}
                    row.update(vms=fed.get("vms", "-"), cut=cut)
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


def hand_over(
    layout: Layout,
    out: Console,
    view: LiveView | None,
    net: RegionNetwork | None = None,
    targets: Path | None = None,
    prometheus: str | None = None,
) -> None:
    out.print("\n[bold]The federation keeps running. Explore it:[/bold]")
    for r in layout.regions:
        for n in layout.in_region(r):
            out.print(
                f"   {n.name:<18} {n.url}  (metrics {n.url}/metrics, "
                f"federation {n.url}/v1/federation/vms)"
            )
    if prometheus:
        out.print(f"   {'Prometheus':<18} {prometheus}  (every node and the gateway, the rules)")
    if targets:
        out.print(f"   Prometheus targets (file_sd): {targets}")
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
    if prometheus:
        out.print(f"     novacron status --url {n0.url} --prometheus {prometheus}")
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
