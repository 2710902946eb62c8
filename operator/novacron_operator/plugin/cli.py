"""``kubectl novacron``: day-2 commands for NovaCron regions, as a kubectl plugin.

Installed with the package as the ``kubectl-novacron`` console script, so kubectl finds it
on PATH (krew: operator/krew/novacron.yaml). It talks to the API server with your kubeconfig
(exec credential plugins, several files in KUBECONFIG, the context's namespace) and reaches
each node's admin API by exec inside its pod.
"""

from __future__ import annotations

import functools
import queue
import re
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import click
from rich import box
from rich.console import Console
from rich.table import Table

from novacron_operator.plugin.cluster import Cluster, NodeView, PluginError

F = TypeVar("F", bound=Callable[..., Any])
# piped (scripts, tests): no terminal width to fit, so never wrap or cut a row
out = Console(highlight=False, width=None if sys.stdout.isatty() else 400)
FENCE_MESSAGE = (
    "not available yet: fencing would keep a node (or every node of a region) from serving "
    "and voting while its pod keeps running, for investigation, and neither the operator nor "
    "the node has that switch yet. Nothing was changed. Meanwhile `kubectl novacron "
    "transfer-leader` moves leadership off a node and `kubectl novacron restart REGION POD` "
    "restarts one."
)


def kube_options(f: F) -> F:
    """kubectl hands its flags to plugins: accept them on every command."""

    @click.option("--kubeconfig", envvar=None, help="Path to the kubeconfig file.")
    @click.option("--context", help="The kubeconfig context to use.")
    @click.option("-n", "--namespace", help="Namespace (default: the context's).")
    @functools.wraps(f)
    def wrapper(
        kubeconfig: str | None, context: str | None, namespace: str | None, **kw: Any
    ) -> Any:
        try:
            return f(Cluster(kubeconfig, context, namespace), **kw)
        except PluginError as e:
            click.echo(f"error: {e}", err=True)
            sys.exit(1)

    return wrapper  # type: ignore[return-value]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Day-2 commands for NovaCron regions (kubectl plugin).

    \b
      kubectl novacron status [REGION]            regions, leaders, terms, lag, conditions
      kubectl novacron transfer-leader REGION     move leadership (--to POD)
      kubectl novacron restart REGION [POD]       rolling restart keeping quorum
      kubectl novacron logs --region REGION       logs of a region's pods
      kubectl novacron fence / unfence            not available yet (says why)
    """


# ---------------------------------------------------------------------- status


def _conditions(obj: dict[str, Any]) -> str:
    conds = (obj.get("status") or {}).get("conditions") or []
    shown = [f"{c['type']}={c['status']}" for c in conds if c.get("type")]
    return ",".join(shown) or "-"


def _reason(obj: dict[str, Any]) -> str:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Degraded" and c.get("status") == "True":
            return str(c.get("message") or c.get("reason") or "")
        if c.get("type") == "Ready" and c.get("status") == "False":
            return str(c.get("message") or c.get("reason") or "")
    return ""


def _s(value: object) -> str:
    return "-" if value is None or value == "" else str(value)


def _health(h: Any) -> tuple[str, str]:
    """status.health as the HEALTH and SLO BURN 1H cells (``-`` where nothing is known)."""
    if not isinstance(h, dict):
        return "-", "-"
    score = h.get("score")
    burns = [
        f"{s.get('name')} {s['burnRate1h']:.2f}"
        for s in h.get("slos") or []
        if isinstance(s, dict) and isinstance(s.get("burnRate1h"), int | float)
    ]
    return (f"{score:.0f}" if isinstance(score, int | float) else "-"), ", ".join(burns) or "-"


def region_table(regions: list[dict[str, Any]], all_ns: bool) -> Table:
    t = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    cols = ["NAMESPACE"] if all_ns else []
    heads = ["REGION", "READY", "LEADER", "TERM", "COMMIT", "HEALTH", "SLO BURN 1H"]
    for c in [*cols, *heads, "CONDITIONS", "MESSAGE"]:
        t.add_column(c, no_wrap=c != "MESSAGE")
    for r in regions:
        st = r.get("status") or {}
        ready = f"{st.get('readyReplicas') or 0}/{r['spec'].get('replicas', '?')}"
        row = [r["metadata"]["namespace"]] if all_ns else []
        row += [
            r["metadata"]["name"],
            ready,
            _s(st.get("leader")),
            _s(st.get("term")),
            _s(st.get("commitIndex")),
            *_health(st.get("health")),
            _conditions(r),
            _reason(r),
        ]
        t.add_row(*row)
    return t


def pod_table(views: list[NodeView]) -> Table:
    commit = max((v.commit for v in views if v.commit is not None), default=None)
    t = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for c in ["POD", "READY", "STATUS", "ROLE", "TERM", "LEADER", "COMMIT", "APPLIED", "LAG"]:
        t.add_column(c, no_wrap=True)
    t.add_column("RESTARTS", no_wrap=True)
    t.add_column("NODE", no_wrap=True)
    for v in views:
        lag = commit - v.applied if commit is not None and v.applied is not None else None
        t.add_row(
            v.pod,
            "yes" if v.ready else "no",
            v.phase if v.error is None else f"{v.phase} ({v.error})",
            _s(v.role),
            _s(v.term),
            _s(v.leader),
            _s(v.commit),
            _s(v.applied),
            _s(lag),
            str(v.restarts),
            v.host or "-",
        )
    return t


@main.command()
@click.argument("region", required=False)
@click.option("-A", "--all-namespaces", is_flag=True, help="Regions in every namespace.")
@click.option("--no-pods", is_flag=True, help="Only the regions' status (no exec into pods).")
@kube_options
def status(cluster: Cluster, region: str | None, all_namespaces: bool, no_pods: bool) -> None:
    """Regions (leader, term, commit index, conditions) and, per node pod, what its own
    admin API says: role, term, leader, commit/applied index and lag behind the leader."""
    regions = [cluster.region(region)] if region else cluster.regions(all_namespaces)
    if not regions:
        where = "any namespace" if all_namespaces else f"namespace {cluster.namespace}"
        click.echo(f"No NovaCronRegions in {where}.")
        return
    out.print(region_table(regions, all_namespaces))
    if no_pods:
        return
    for r in regions:
        name, ns = r["metadata"]["name"], r["metadata"]["namespace"]
        pods = cluster.pods(name, ns)
        out.print(f"\n[bold]{ns}/{name}[/bold]: {len(pods)} node pod(s)")
        if pods:
            out.print(pod_table([cluster.node_view(p) for p in pods]))


# ---------------------------------------------------------------------- transfer-leader


def _leader(cluster: Cluster, pods: list[Any]) -> tuple[NodeView | None, list[NodeView]]:
    views = [cluster.node_view(p) for p in pods]
    leaders = {v.leader for v in views if v.leader}
    for v in views:
        if v.role == "leader" and (len(leaders) <= 1 or v.leader == v.pod):
            return v, views
    return None, views


def _wait_leader(
    cluster: Cluster, name: str, ns: str, pred: Callable[[str], bool], timeout: float
) -> NodeView | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        leader, _ = _leader(cluster, cluster.pods(name, ns))
        if leader is not None and pred(leader.pod):
            return leader
        time.sleep(1)
    return None


def transfer(cluster: Cluster, name: str, ns: str, to: str | None) -> NodeView:
    leader, views = _leader(cluster, cluster.pods(name, ns))
    if leader is None:
        raise PluginError(f"{name} has no leader now; nothing to transfer (see `status {name}`)")
    candidates = [v for v in views if v.pod != leader.pod and v.ready and v.applied is not None]
    if to is None:
        if not candidates:
            raise PluginError(f"{name}: no ready follower to take over from {leader.pod}")
        target = max(candidates, key=lambda v: v.applied or 0).pod
    elif to == leader.pod:
        click.echo(f"{to} already leads {name} (term {leader.term}); nothing to do")
        return leader
    elif to not in {v.pod for v in views}:
        raise PluginError(
            f"--to {to}: not a node pod of {name} ({', '.join(v.pod for v in views)})"
        )
    else:
        target = to
    status_, body = cluster.node_http(
        leader.pod, ns, "POST", "/v1/cluster/transfer", {"target": target}
    )
    if status_ != 200:
        detail = body.get("detail") or body.get("title") if isinstance(body, dict) else body
        raise PluginError(f"{leader.pod} refused the transfer to {target}: {status_} {detail}")
    new = _wait_leader(cluster, name, ns, lambda pod: pod == target, 30)
    if new is None:
        raise PluginError(
            f"{leader.pod} accepted the transfer to {target}, but {target} did not lead "
            "within 30s; it may still take over (check `status`)"
        )
    click.echo(f"{name}: leadership moved {leader.pod} -> {new.pod} (term {new.term})")
    return new


@main.command("transfer-leader")
@click.argument("region")
@click.option("--to", "to", metavar="POD", help="The new leader (default: the most caught-up).")
@kube_options
def transfer_leader(cluster: Cluster, region: str, to: str | None) -> None:
    """Ask the region's leader to hand leadership to another node (Raft leadership
    transfer: no election timeout, no lost writes), and wait until it has."""
    r = cluster.region(region)
    transfer(cluster, region, r["metadata"]["namespace"], to)


# ---------------------------------------------------------------------- restart


@main.command()
@click.argument("region")
@click.argument("pod", required=False)
@click.option("--timeout", default=300.0, show_default=True, help="Seconds per pod.")
@kube_options
def restart(cluster: Cluster, region: str, pod: str | None, timeout: float) -> None:
    """Restart a region's node pods one at a time, followers first; before the leader's
    pod goes, leadership moves to a caught-up follower. Each pod must be back, Ready
    (caught up with the leader) before the next one goes, so the group keeps its quorum.
    With POD, only that pod."""
    r = cluster.region(region)
    ns = r["metadata"]["namespace"]
    pods = cluster.pods(region, ns)
    names = [p.metadata.name for p in pods]
    if pod is not None and pod not in names:
        raise PluginError(f"{pod}: not a node pod of {region} ({', '.join(names) or 'none'})")
    not_ready = [v.pod for v in map(cluster.node_view, pods) if not v.ready]
    if not_ready and (pod is None or set(not_ready) - {pod}):
        raise PluginError(
            f"{region}: {', '.join(not_ready)} not Ready; restarting now could cost the "
            "group its quorum. Wait for `status` to show every pod Ready."
        )
    leader, _ = _leader(cluster, pods)
    order = (
        [pod] if pod else sorted(names, key=lambda n: (leader is not None and n == leader.pod, n))
    )
    for name in order:
        current, _ = _leader(cluster, cluster.pods(region, ns))
        if current is not None and current.pod == name and len(names) > 1:
            transfer(cluster, region, ns, None)
        uid = cluster.delete_pod(name, ns)
        click.echo(f"{name}: deleted, waiting for its replacement to be Ready")
        start = time.monotonic()
        cluster.wait_replaced_ready(name, ns, uid, timeout)
        click.echo(f"{name}: back and Ready after {time.monotonic() - start:.1f}s")
    click.echo(f"{region}: restarted {len(order)} pod(s)")


# ---------------------------------------------------------------------- logs


def _seconds(value: str | None) -> int | None:
    if value is None:
        return None
    m = re.fullmatch(r"(\d+)([smh]?)", value)
    if not m:
        raise click.BadParameter("a duration like 30s, 10m or 2h", param_hint="--since")
    return int(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[m.group(2)]


@main.command()
@click.option("--region", required=True, help="The NovaCronRegion.")
@click.option(
    "--component",
    type=click.Choice(["node", "gateway", "agent"]),
    default="node",
    show_default=True,
)
@click.option("-f", "--follow", is_flag=True, help="Stream new lines until Ctrl-C.")
@click.option("--tail", type=int, default=None, help="Lines per pod from the end.")
@click.option("--since", default=None, help="Only newer lines (30s, 10m, 2h).")
@kube_options
def logs(
    cluster: Cluster,
    region: str,
    component: str,
    follow: bool,
    tail: int | None,
    since: str | None,
) -> None:
    """The logs of every pod of a region's component, each line prefixed by its pod."""
    r = cluster.region(region)
    ns = r["metadata"]["namespace"]
    pods = cluster.pods(region, ns, component)
    if not pods:
        raise PluginError(f"{region} has no {component} pods in {ns}")
    secs = _seconds(since)
    if not follow:
        for p in pods:
            for line in cluster.logs(p.metadata.name, ns, component, tail, secs, False):
                click.echo(f"[{p.metadata.name}] {line}")
        return
    lines: queue.Queue[str | None] = queue.Queue(maxsize=10000)

    def pump(name: str) -> None:
        try:
            for line in cluster.logs(name, ns, component, tail, secs, True):
                lines.put(f"[{name}] {line}")
        except PluginError as e:
            lines.put(f"[{name}] error: {e}")
        finally:
            lines.put(None)

    for p in pods:
        threading.Thread(target=pump, args=(p.metadata.name,), daemon=True).start()
    open_streams = len(pods)
    try:
        while open_streams:
            item = lines.get()
            if item is None:
                open_streams -= 1
            else:
                click.echo(item)
    except KeyboardInterrupt:
        pass


# ---------------------------------------------------------------------- fence


@main.command(context_settings={"ignore_unknown_options": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def fence(args: tuple[str, ...]) -> None:
    """Not available yet: prints why and exits 2 without changing anything."""
    click.echo(f"kubectl novacron fence: {FENCE_MESSAGE}", err=True)
    sys.exit(2)


@main.command(context_settings={"ignore_unknown_options": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def unfence(args: tuple[str, ...]) -> None:
    """Not available yet: prints why and exits 2 without changing anything."""
    click.echo(f"kubectl novacron unfence: {FENCE_MESSAGE}", err=True)
    sys.exit(2)


if __name__ == "__main__":
    main()
