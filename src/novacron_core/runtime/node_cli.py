"""``novacron node``: run one consensus node. Also runnable as
``python -m novacron_core.runtime.node_cli`` (used by tests before the CLI is wired)."""

from __future__ import annotations

from typing import Any

import click

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
@click.option("--election-timeout-ms", type=int)
@click.option("--heartbeat-ms", type=int)
@click.option("--snapshot-entries", type=int)
@click.option("--read-mode", type=click.Choice(["read_index", "lease"]))
@click.option("--fsync/--no-fsync", default=None)
@click.option("--max-inflight-requests", type=int)
@click.option("--tls-cert", type=click.Path(exists=True))
@click.option("--tls-key", type=click.Path(exists=True))
@click.option("--tls-ca", type=click.Path(exists=True))
def node_command(config_file: str | None, **flags: Any) -> None:
    """Run a NovaCron consensus node (Raft member, KV/VM store, HTTP and admin API)."""
    run_node(load_settings(config_file, **flags))


if __name__ == "__main__":
    node_command()
