"""``novacron gateway``: command-line entry of the gateway process."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from typing import Any

import click

from novacron_core.balancing import ALGORITHMS
from novacron_core.runtime.gateway.config import ConfigError, GatewayConfig, load_config

EPILOG = """
\b
Examples:
  # two regions on this machine, nodes discovered from one address each
  novacron gateway --listen 127.0.0.1:8443 --admin-listen 127.0.0.1:9090 \\
      --seed us-east1=127.0.1.1:8080 --seed europe-west1=127.0.3.1:8080
  # what the operator runs (region.json from the region's ConfigMap)
  novacron gateway --config /etc/novacron/region.json \\
      --topology /etc/novacron/topology/topology.json
  # fixed backends, no discovery (any HTTP servers)
  novacron gateway --backend local=127.0.0.1:8001,127.0.0.1:8002 --health-check tcp

\b
Routing: a request naming a VM goes to the VM's home region (learned from the nodes'
answers); POST /v1/vms to the nearest region with healthy capacity (spill-over at
Envoy's overprovisioning factor 1.4); other /v1 requests stay in the client's region
(X-Novacron-Region, else the gateway's). Writes go to the region's leader when known.
Hints: X-Novacron-Region: NAME, X-Client-Location: LAT,LON, and the affinity header.

\b
Answers the gateway makes itself are application/problem+json with "outcome":
"not_applied" (safe to retry) or "unknown" (the request may have been applied).
Own endpoints: /healthz, /readyz, /metrics, /v1/backends (also on --admin-listen).
SIGTERM/SIGINT drain: in-flight requests finish (--shutdown-timeout), exit status 0.
"""


@click.command("gateway", epilog=EPILOG)
@click.option(
    "--config",
    "config_file",
    type=click.Path(),
    help="JSON/YAML: a gateway config, the operator's region.json, or a topology.json",
)
@click.option(
    "--topology",
    "topology_file",
    type=click.Path(),
    help="the federation's topology.json: adds every member region",
)
@click.option("--listen", help="host:port for clients [0.0.0.0:8443]")
@click.option("--admin-listen", help="host:port for probes and metrics only [0.0.0.0:9090]")
@click.option("--region", help="this gateway's own region (default: the first configured)")
@click.option(
    "--seed",
    "seeds",
    multiple=True,
    metavar="REGION=HOST:PORT[,..]",
    help="a node's client API to discover REGION's members from (repeatable)",
)
@click.option(
    "--backend",
    "backends",
    multiple=True,
    metavar="REGION=HOST:PORT[,..]",
    help="fixed backends of REGION, no discovery (repeatable)",
)
@click.option("--algorithm", type=click.Choice(ALGORITHMS), help="[least_request]")
@click.option("--affinity", type=click.Choice(["none", "ring", "maglev"]), help="[none]")
@click.option("--affinity-header", help="header carrying the affinity key [X-Session-Id]")
@click.option(
    "--health-check",
    type=click.Choice(["none", "tcp", "http", "https", "custom"]),
    help="active check kind [http]",
)
@click.option("--health-path", help="path of the HTTP check [/healthz]")
@click.option("--shutdown-timeout", "shutdown_timeout_s", type=float, help="[15] seconds")
@click.option("--max-connections", type=int, help="client connections held at once [20000]")
@click.option("--max-inflight", type=int, help="requests in flight before 429 [4096]")
@click.option("--tls-cert", type=click.Path(exists=True), help="serve HTTPS with this cert")
@click.option("--tls-key", type=click.Path(exists=True), help="... and this key")
@click.option(
    "--loop",
    "loop_kind",
    type=click.Choice(["auto", "uvloop", "asyncio"]),
    default="auto",
    show_default=True,
    help="event loop (uvloop when installed)",
)
@click.option("--print-config", is_flag=True, help="print the effective configuration and exit")
@click.option("--log-level", default="info", show_default=True)
def gateway_command(
    config_file: str | None,
    topology_file: str | None,
    seeds: tuple[str, ...],
    backends: tuple[str, ...],
    health_check: str | None,
    health_path: str | None,
    loop_kind: str,
    print_config: bool,
    log_level: str,
    **flags: Any,
) -> None:
    """Run the gateway: an HTTP reverse proxy in front of the regions' nodes that picks a
    region and a healthy node for each request, retries what is safe to retry, and fails
    over when a node or a whole region dies."""
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    try:
        cfg = load_config(config_file, topology_file, seeds, backends, **flags)
        if health_check or health_path:
            health = dict(cfg.health)
            if health_check:
                health["kind"] = health_check
            if health_path:
                health["path"] = health_path
            cfg = load_config(
                config_file, topology_file, seeds, backends, **{**flags, "health": health}
            )
    except ConfigError as e:
        raise click.UsageError(str(e)) from None
    if print_config:
        click.echo(json.dumps(cfg.model_dump(), indent=2))
        return
    run(cfg, loop_kind)


def run(cfg: GatewayConfig, loop_kind: str = "auto") -> None:
    from novacron_core.runtime.gateway.server import serve

    def exit_now() -> None:
        # stop() is stuck (logged with what): end the process without waiting on it
        logging.shutdown()
        os._exit(1)

    try:
        if loop_kind != "asyncio":
            try:
                import uvloop
            except ImportError:
                if loop_kind == "uvloop":
                    raise click.UsageError("--loop uvloop: uvloop is not installed") from None
            else:
                uvloop.run(serve(cfg, on_stuck=exit_now))
                return
        asyncio.run(serve(cfg, on_stuck=exit_now))
    except OSError as e:
        click.echo(f"novacron gateway: {e}", err=True)
        sys.exit(1)


if __name__ == "__main__":
    gateway_command()
