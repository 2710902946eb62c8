"""``novacron agent``: the DWCP networking agent."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import click

from novacron_core.runtime.agent.config import HTTP_PORT, PROBE_PORT, ConfigError, load_config


def _peer(value: str, mode: str) -> dict[str, Any]:
    name, sep, rest = value.partition("=")
    addr, _, region = rest.partition(",")
    if not sep or not name or not addr:
        raise click.BadParameter(f"NAME=HOST:PORT[,REGION], not {value!r}")
    return {"name": name, "address": addr, "region": region or name, "mode": mode}


@click.command("agent")
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False),
    help="region.json (as the operator renders it) or the agent's own JSON/YAML",
)
@click.option(
    "--topology",
    "topology_file",
    type=click.Path(dir_okay=False),
    help="the federation's topology.json: its other members become peers",
)
@click.option("--name", help="this agent's member name [NOVACRON_AGENT_NAME; default region-node]")
@click.option("--region", help="this agent's region (overrides the config's)")
@click.option("--listen", help=f"UDP probes / TCP bandwidth samples (default 0.0.0.0:{PROBE_PORT})")
@click.option("--http", "http_listen", help=f"HTTP API and /metrics (default 0.0.0.0:{HTTP_PORT})")
@click.option(
    "--peer",
    "peers",
    multiple=True,
    metavar="NAME=HOST:PORT[,REGION]",
    help="another agent to probe over UDP (repeatable)",
)
@click.option(
    "--tcp-peer",
    "tcp_peers",
    multiple=True,
    metavar="NAME=HOST:PORT[,REGION]",
    help="an endpoint without an agent: RTT and loss from TCP connects (repeatable)",
)
@click.option("--probe-interval-ms", type=int, help="ms between probes to one peer (100)")
@click.option(
    "--remove-tunnels-on-exit/--keep-tunnels-on-exit",
    default=None,
    help="on SIGTERM, remove the tunnels this agent made (default: keep them, so "
    "traffic keeps flowing across a restart; tunnels.keepOnExit in the config)",
)
@click.option("--print-config", is_flag=True, help="print the merged configuration and exit")
@click.option("-v", "--verbose", is_flag=True, help="log at INFO")
def agent_command(
    config_file: str | None,
    topology_file: str | None,
    peers: tuple[str, ...],
    tcp_peers: tuple[str, ...],
    probe_interval_ms: int | None,
    remove_tunnels_on_exit: bool | None,
    print_config: bool,
    verbose: bool,
    **flags: Any,
) -> None:
    """Run the DWCP networking agent: measure links to peers, keep the topology, routes
    (with QoS classes and precomputed backups) and Vivaldi coordinates, and keep tunnels.

    \b
    It probes each peer every 100 ms (UDP to other agents; TCP connects to endpoints without
    one), declares a link down after 3 probes lost in a row and moves the routes on it to
    their precomputed link-disjoint backups at once, recomputing in the background.
    Agents flood their measured links to each other, so each sees the whole mesh.

    \b
    Serves (on --http):
      /healthz           liveness, peers up, tunnel state
      /metrics           Prometheus: per-peer RTT, loss, up; reroutes; recomputations
      /v1/topology       members, links (RTT, jitter, loss, bandwidth, up), adverts
      /v1/routes         routes per destination and QoS class (?dst=NAME&qos=CLASS), events
      /v1/coordinates    Vivaldi coordinates and RTT estimates (?nearest=a,b,c)

    \b
    Tunnels (VXLAN, GRE, WireGuard) are reconciled only when the config names them and the
    process may change interfaces (root or NET_ADMIN, as in the DaemonSet with
    hostNetwork); unprivileged it measures and routes only. On SIGTERM it stops cleanly.

    \b
    Local run, three agents on loopback:
      novacron agent --name a --region r1 --listen 127.0.0.1:7946 --http 127.0.0.1:7947 \\
        --peer b=127.0.0.1:7956,r2 --peer c=127.0.0.1:7966,r3
    """
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    overrides: dict[str, Any] = {k: v for k, v in flags.items() if v is not None}
    if flags.get("http_listen"):
        overrides["http"] = overrides.pop("http_listen")
    overrides.pop("http_listen", None)
    extra = [_peer(p, "agent") for p in peers] + [_peer(p, "tcp") for p in tcp_peers]
    if extra:
        overrides["peers"] = extra
    if probe_interval_ms is not None:
        overrides["probe"] = {"intervalMs": probe_interval_ms}
    try:
        cfg = load_config(config_file, topology_file, overrides)
    except ConfigError as e:
        raise click.ClickException(f"bad agent configuration: {e}") from None
    if print_config:
        click.echo(json.dumps(cfg.model_dump(by_alias=True), indent=2))
        return
    if not cfg.peers:
        click.echo("warning: no peers: nothing to measure (give --peer or a topology)", err=True)
    from novacron_core.runtime.agent.server import serve

    try:
        asyncio.run(serve(cfg, remove_tunnels_on_exit))
    except OSError as e:
        raise click.ClickException(f"cannot start: {e}") from None


if __name__ == "__main__":
    agent_command()
