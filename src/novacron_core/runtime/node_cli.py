"""``novacron node``: run one consensus node. Also runnable as
``python -m novacron_core.runtime.node_cli`` (used by tests before the CLI is wired)."""

from __future__ import annotations

from typing import Any

import click
from pydantic import ValidationError

from novacron_core.runtime.node import run_node
from novacron_core.runtime.settings import load_settings


@click.command("node")
@click.option("--config", "config_file", type=click.Path(exists=True), help="YAML/JSON file")
@click.option("--node-id", help="this node's id [NOVACRON_NODE_ID]")
@click.option("--data-dir", type=click.Path(), help="log and snapshots [NOVACRON_DATA_DIR]")
@click.option("--region", help="home region of VMs created here [NOVACRON_REGION]")
@click.option(
    "--peers",
    help="bootstrap members n1=host:port/host:httpport,... [NOVACRON_PEERS]; "
    "a node not among them starts as a joiner",
)
@click.option("--peer-listen", help="host:port for peers (default: own entry in --peers)")
@click.option("--http-listen", help="host:port for HTTP (default: own entry in --peers)")
@click.option(
    "--join/--no-join",
    default=None,
    help="start empty and wait to be added (implied when not among --peers)",
)
@click.option(
    "--initial-cluster-state",
    type=click.Choice(["new", "existing"]),
    help="new (default): a bootstrap member with an empty data dir bootstraps the group; "
    "existing: the group already formed, so an empty data dir means lost state: do not vote "
    "until this member is removed and added again as a learner [NOVACRON_INITIAL_CLUSTER_STATE]",
)
@click.option(
    "--initial-cluster-state-file",
    type=click.Path(),
    help="a file holding new or existing; when it exists it wins over "
    "--initial-cluster-state [NOVACRON_INITIAL_CLUSTER_STATE_FILE]",
)
@click.option(
    "--protocol",
    help="the region's consensus protocol, a package of novacron_core.consensus: raft "
    "(the default: a leader orders every write), multi-paxos (a stable leader, phase 2 per "
    "slot), epaxos (leaderless: every node takes writes, one round trip when they do not "
    "conflict) or eventual (every replica answers at once and converges later; replies say "
    "consistency: eventual) [NOVACRON_PROTOCOL]",
)
@click.option(
    "--quorum",
    help="which voter sets decide: majority (default); multi-paxos also takes "
    "flexible:q2=N[,q1=M] (FPaxos), weighted:NODE=W,...[,q1=T][,q2=T], grid:cols=C, "
    "hierarchical:NODE=REGION,...; quorums that could miss each other are refused "
    "[NOVACRON_QUORUM]",
)
@click.option(
    "--federation-file",
    type=click.Path(),
    help="the federation this region belongs to (JSON the operator renders from a "
    "DWCPFederation: members with their endpoints, gossip, anti-entropy); re-read every few "
    "seconds and applied without a restart; absent: a single-region node "
    "[NOVACRON_FEDERATION_FILE]",
)
@click.option("--federation-poll-s", type=float, hidden=True)
@click.option(
    "--demo-link-rules/--no-demo-link-rules",
    default=None,
    hidden=True,
    help="novacron demo only: delay federation messages RTT/2 and drop them across a "
    "partition set with POST /v1/federation/netem",
)
@click.option("--election-timeout-ms", type=int)
@click.option("--heartbeat-ms", type=int)
@click.option("--snapshot-entries", type=int)
@click.option("--read-mode", type=click.Choice(["read_index", "lease"]))
@click.option("--fsync/--no-fsync", default=None)
@click.option("--max-inflight-requests", type=int)
@click.option(
    "--wire-port-offset",
    type=int,
    help="the wire API (pipelined msgpack frames over TCP, what `novacron kv` and the "
    "Python client use) listens at the HTTP port plus this (default 1: 8080 -> 8081; the "
    "same for the whole group; 0 turns it off) [NOVACRON_WIRE_PORT_OFFSET]",
)
@click.option("--tls-cert", type=click.Path(exists=True))
@click.option("--tls-key", type=click.Path(exists=True))
@click.option("--tls-ca", type=click.Path(exists=True))
@click.option(
    "--metrics/--no-metrics",
    default=None,
    help="Prometheus metrics on /metrics (default on) [NOVACRON_METRICS]",
)
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    envvar="NOVACRON_LOG_FORMAT",
    default="text",
    show_default=True,
    help="json: one object per line with trace ids [NOVACRON_LOG_FORMAT]",
)
def node_command(config_file: str | None, log_format: str, **flags: Any) -> None:
    """Run a NovaCron region node: a member of its region's consensus group (the VM/KV
    store), a replica of the federation's state (with --federation-file), and the client,
    admin and federation HTTP API on one port.

    Tracing is off unless the standard OpenTelemetry variables ask for it, e.g.
    OTEL_EXPORTER_OTLP_ENDPOINT=http://collector:4318 with OTEL_TRACES_SAMPLER=
    parentbased_traceidratio and OTEL_TRACES_SAMPLER_ARG=0.01 (docs/observability.md).
    """
    from novacron_core.observe.logs import setup_logging
    from novacron_core.observe.tracing import setup_tracing, shutdown_tracing

    try:
        settings = load_settings(config_file, **flags)
    except ValidationError as e:
        raise click.UsageError(
            "; ".join(f"{'.'.join(str(x) for x in err['loc'])}: {err['msg']}" for err in e.errors())
        ) from None
    setup_logging(log_format)
    attrs = {"novacron.region": settings.region, "service.instance.id": settings.node_id}
    setup_tracing("novacron-node", attrs)
    try:
        run_node(settings)
    finally:
        shutdown_tracing()


if __name__ == "__main__":
    node_command()
