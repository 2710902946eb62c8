"""``novacron status`` and ``novacron vms ...``: talk to running nodes over their HTTP API."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from novacron_core.client import ClientError, NodeClient, NodeUnreachable, OutcomeUnknown

DEFAULT_URL = "http://127.0.1.1:8080"
_url_option = click.option(
    "--url",
    "urls",
    multiple=True,
    envvar="NOVACRON_URL",
    default=[DEFAULT_URL],
    show_default=True,
    help="Node URL; repeat for several (tried in turn). Env: NOVACRON_URL.",
)
# field names of the node API's VM records (runtime/http_api.py, vm.VMRecord)
VM_COLUMNS = ["id", "name", "home_region", "power", "spec", "version"]
_federation_option = click.option(
    "--federation",
    is_flag=True,
    help="Read the node's federation replica (every region's VMs, as replicated to this "
    "node) instead of its own region's group; the same --url, e.g. http://127.0.3.1:8080 "
    "in `novacron demo`.",
)
_json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON, not a table.")


def _run(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except (NodeUnreachable, OutcomeUnknown, ClientError) as e:
        # each says whether the request was applied (docs/api.md, the error contract)
        raise click.ClickException(str(e)) from None


def _print(data: Any, as_json: bool, columns: Sequence[str], title: str) -> None:
    if as_json:
        click.echo(json.dumps(data, indent=2, sort_keys=True))
        return
    rows = data if isinstance(data, list) else [data]
    table = Table(title=title)
    for c in columns:
        table.add_column(c)
    for row in rows:
        table.add_row(*(_cell(row.get(c)) for c in columns))
    Console(file=sys.stdout).print(table)


def _cell(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, dict | list):
        return json.dumps(v, sort_keys=True)
    return str(v)


@click.command("status")
@_url_option
@_json_option
@click.option(
    "--prometheus",
    envvar="NOVACRON_PROMETHEUS_URL",
    help="also show every region's health score and SLO burn rates from this Prometheus "
    "[NOVACRON_PROMETHEUS_URL]",
)
def status_command(urls: tuple[str, ...], as_json: bool, prometheus: str | None) -> None:
    """Show each node's view of its cluster: leader, term, commit index, members; with
    --prometheus, the regions' health scores and SLO burn rates too."""
    rows = []
    for url in urls:
        try:
            info = NodeClient(url).call("GET", "/v1/cluster")
            rows.append({"url": url, **info} if isinstance(info, dict) else {"url": url})
        except (NodeUnreachable, ClientError) as e:
            rows.append({"url": url, "error": str(e)})
    if all("error" in r for r in rows):
        if as_json:
            click.echo(json.dumps(rows, indent=2))
        raise click.ClickException(rows[0]["error"] if len(rows) == 1 else "no node answered")
    cols = ["url", "id", "role", "leader", "term", "commit", "applied", "voters", "error"]
    _print(rows, as_json, cols, "NovaCron nodes")
    if prometheus:
        from novacron_core.observe.cli import print_federation

        print_federation(prometheus, as_json)


@click.group("vms")
def vms_group() -> None:
    """List, inspect, create, power and delete VM records."""


@vms_group.command("list")
@_url_option
@_federation_option
@_json_option
def vms_list(urls: tuple[str, ...], federation: bool, as_json: bool) -> None:
    """List the VMs of the node's region, or with --federation every region's VMs as this
    node's replica holds them."""
    path = "/v1/federation/vms" if federation else "/v1/vms"
    data = _run(lambda: NodeClient(urls).call("GET", path))
    items = data.get("vms", []) if isinstance(data, dict) else data
    _print(items, as_json, VM_COLUMNS, "VMs")


@vms_group.command("get")
@click.argument("vm_id")
@_url_option
@_federation_option
@_json_option
def vms_get(vm_id: str, urls: tuple[str, ...], federation: bool, as_json: bool) -> None:
    """Show one VM record (with --federation: from the node's replica, any home region)."""
    path = f"/v1/federation/vms/{vm_id}" if federation else f"/v1/vms/{vm_id}"
    data = _run(lambda: NodeClient(urls).call("GET", path))
    _print(data, as_json, VM_COLUMNS, f"VM {vm_id}")


@vms_group.command("create")
@click.argument("vm_id")
@click.option("--name", help="display name (default: the id)")
@click.option("--cpus", type=click.IntRange(1, 512), default=2, show_default=True)
@click.option("--memory-mib", type=click.IntRange(64), default=2048, show_default=True)
@click.option("--image", default="debian-12", show_default=True)
@_url_option
@_json_option
def vms_create(
    vm_id: str,
    name: str | None,
    cpus: int,
    memory_mib: int,
    image: str,
    urls: tuple[str, ...],
    as_json: bool,
) -> None:
    """Create a VM record homed in the region of the node you talk to."""
    spec = {"cpus": cpus, "memory_mib": memory_mib, "image": image}
    body = {"id": vm_id, "name": name or vm_id, "spec": spec}
    data = _run(lambda: NodeClient(urls).call("POST", "/v1/vms", body))
    _print(data, as_json, VM_COLUMNS, "created")


@vms_group.command("power")
@click.argument("vm_id")
@click.argument("state", type=click.Choice(["on", "off"]))
@_url_option
@_json_option
def vms_power(vm_id: str, state: str, urls: tuple[str, ...], as_json: bool) -> None:
    """Power a VM on or off (a write at its home region)."""
    data = _run(lambda: NodeClient(urls).call("POST", f"/v1/vms/{vm_id}/power", {"state": state}))
    _print(data, as_json, VM_COLUMNS, "power")


@vms_group.command("delete")
@click.argument("vm_id")
@_url_option
def vms_delete(vm_id: str, urls: tuple[str, ...]) -> None:
    """Delete a VM record."""
    _run(lambda: NodeClient(urls).call("DELETE", f"/v1/vms/{vm_id}"))
    click.echo(f"deleted {vm_id}")
