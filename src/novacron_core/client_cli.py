"""``novacron status``, ``novacron vms ...`` and ``novacron conflicts ...``: talk to running
nodes over their HTTP API."""

from __future__ import annotations

import datetime
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
# field names of the node API's VM records (runtime/vm_api.py, conflict/record.py); ip and
# host are the first NIC's address and the placement's host
VM_COLUMNS = [
    "id",
    "name",
    "home_region",
    "lifecycle",
    "power",
    "ip",
    "host",
    "version",
    "conflict",
]
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


def _console() -> Console:
    # piped or captured: wide enough that ids and decisions are not wrapped mid-word
    return Console(file=sys.stdout, width=None if sys.stdout.isatty() else 240)


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
    _console().print(table)


def _vm_rows(data: Any) -> Any:
    rows = data if isinstance(data, list) else [data]
    out = []
    for r in rows:
        if not isinstance(r, dict):
            continue
        nics = r.get("nics") or []
        addr = (nics[0].get("address") or {}) if nics and isinstance(nics[0], dict) else {}
        p = r.get("placement")
        place: dict[str, Any] = p if isinstance(p, dict) else {}
        out.append({**r, "ip": addr.get("ip"), "host": place.get("host")})
    return out if isinstance(data, list) else (out[0] if out else data)


def _cell(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, dict | list):
        return json.dumps(v, sort_keys=True)
    return str(v)


def _node_health(url: str) -> dict[str, Any]:
    """The node's own health score and its worst 1 h SLO burn rate (GET /v1/observe/health);
    nothing when it has none yet or does not answer: the status row stands without it."""
    try:
        h = NodeClient(url, timeout=2.0).call("GET", "/v1/observe/health")
    except (NodeUnreachable, ClientError):
        return {}
    if not isinstance(h, dict):
        return {}
    comps = h.get("components") or {}
    if not any(isinstance(c, dict) and c.get("input") is not None for c in comps.values()):
        return {"health": None, "slo_burn_1h": None}  # no sample yet (the first comes ~5 s in)
    burns = [
        r
        for slo in (h.get("slos") or {}).values()
        if isinstance(slo, dict)
        for r in [(slo.get("burn_rate") or {}).get("1h")]
        if isinstance(r, int | float)
    ]
    return {"health": h.get("score"), "slo_burn_1h": round(max(burns), 2) if burns else None}


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
    """Show each node's view of its cluster: leader, term, commit index, members, and its
    region's health score (0-100) and worst SLO burn rate over 1 h as the node measures them;
    with --prometheus, every region's health and burn rates from Prometheus too."""
    rows = []
    for url in urls:
        try:
            info = NodeClient(url).call("GET", "/v1/cluster")
            row = {"url": url, **info} if isinstance(info, dict) else {"url": url}
            rows.append({**row, **_node_health(url)})
        except (NodeUnreachable, ClientError) as e:
            rows.append({"url": url, "error": str(e)})
    if all("error" in r for r in rows):
        if as_json:
            click.echo(json.dumps(rows, indent=2))
        raise click.ClickException(rows[0]["error"] if len(rows) == 1 else "no node answered")
    cols = ["url", "id", "role", "leader", "term", "commit", "applied", "voters"]
    cols += ["health", "slo_burn_1h", "error"]
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
    _print(items if as_json else _vm_rows(items), as_json, VM_COLUMNS, "VMs")


@vms_group.command("get")
@click.argument("vm_id")
@_url_option
@_federation_option
@_json_option
def vms_get(vm_id: str, urls: tuple[str, ...], federation: bool, as_json: bool) -> None:
    """Show one VM record (with --federation: from the node's replica, any home region)."""
    path = f"/v1/federation/vms/{vm_id}" if federation else f"/v1/vms/{vm_id}"
    data = _run(lambda: NodeClient(urls).call("GET", path))
    _print(data if as_json else _vm_rows(data), as_json, VM_COLUMNS, f"VM {vm_id}")


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
    _print(data if as_json else _vm_rows(data), as_json, VM_COLUMNS, "created")


@vms_group.command("power")
@click.argument("vm_id")
@click.argument("state", type=click.Choice(["on", "off"]))
@_url_option
@_json_option
def vms_power(vm_id: str, state: str, urls: tuple[str, ...], as_json: bool) -> None:
    """Power a VM on or off (a write at its home region, or at any region when writes are
    multi; a node of another region sends you to the home region)."""
    data = _run(lambda: NodeClient(urls).call("POST", f"/v1/vms/{vm_id}/power", {"state": state}))
    _print(data if as_json else _vm_rows(data), as_json, VM_COLUMNS, "power")


@vms_group.command("reboot")
@click.argument("vm_id")
@_url_option
@_json_option
def vms_reboot(vm_id: str, urls: tuple[str, ...], as_json: bool) -> None:
    """Reboot a running VM (counts in stats.restarts)."""
    data = _run(lambda: NodeClient(urls).call("POST", f"/v1/vms/{vm_id}/reboot"))
    _print(data if as_json else _vm_rows(data), as_json, VM_COLUMNS, "reboot")


@vms_group.command("readdress")
@click.argument("vm_id")
@click.option("--nic", default="eth0", show_default=True)
@click.option("--ip", help="the address to lease (default: the lowest free one of the pool)")
@_url_option
@_json_option
def vms_readdress(
    vm_id: str, nic: str, ip: str | None, urls: tuple[str, ...], as_json: bool
) -> None:
    """Give a VM's NIC a new address from its region's pool."""
    body = {"nic": nic, **({"ip": ip} if ip else {})}
    data = _run(lambda: NodeClient(urls).call("POST", f"/v1/vms/{vm_id}/readdress", body))
    _print(data if as_json else _vm_rows(data), as_json, VM_COLUMNS, "readdress")


@vms_group.command("delete")
@click.argument("vm_id")
@_url_option
def vms_delete(vm_id: str, urls: tuple[str, ...]) -> None:
    """Delete a VM record."""
    _run(lambda: NodeClient(urls).call("DELETE", f"/v1/vms/{vm_id}"))
    click.echo(f"deleted {vm_id}")


# ------------------------------------------------------------------ conflicts


@click.group("conflicts")
def conflicts_group() -> None:
    """List, explain, resolve and roll back conflicts between regions' writes.

    \b
    Every node keeps the audit trail of what its replica detected and how each conflict
    was decided (policy: DWCPFederation.spec.conflictPolicies). Replicas that hold the same
    writes list the same conflicts.
    """


def _ms(v: Any) -> str:
    if not isinstance(v, int) or v <= 0:
        return "-"
    t = datetime.datetime.fromtimestamp(v / 1000, datetime.UTC)
    return t.strftime("%H:%M:%S.%f")[:-3]


def _decided(e: dict[str, Any]) -> str:
    parts = []
    for f in e.get("fields") or []:
        value = f.get("value")
        shown = json.dumps(value, sort_keys=True) if isinstance(value, dict | list) else value
        parts.append(f"{f.get('path')}={shown} ({f.get('strategy')})")
    merged = e.get("merged") or {}
    if merged and not parts:
        parts.append("merged: " + ", ".join(sorted(merged)))
    return "; ".join(parts) or "-"


@conflicts_group.command("list")
@click.option("--vm", "vm", help="only this VM's conflicts")
@click.option("--since", help="detected at or after (ms since the epoch, or ISO 8601)")
@click.option("--until", help="detected at or before (ms since the epoch, or ISO 8601)")
@click.option(
    "--status",
    type=click.Choice(["resolved", "siblings", "manual", "superseded"]),
    help="manual: parked until someone decides",
)
@click.option("--all", "include_all", is_flag=True, help="include superseded detections")
@_url_option
@_json_option
def conflicts_list(
    vm: str | None,
    since: str | None,
    until: str | None,
    status: str | None,
    include_all: bool,
    urls: tuple[str, ...],
    as_json: bool,
) -> None:
    """What conflicted, what was decided and why (newest first)."""
    query = {"vm": vm, "since": since, "until": until, "status": status}
    params = "&".join(f"{k}={v}" for k, v in query.items() if v)
    if include_all:
        params += ("&" if params else "") + "all=1"
    data = _run(
        lambda: NodeClient(urls).call("GET", "/v1/conflicts" + ("?" + params if params else ""))
    )
    entries = data.get("conflicts", []) if isinstance(data, dict) else []
    if as_json:
        click.echo(json.dumps(data, indent=2, sort_keys=True))
        return
    rows = [
        {
            "id": e.get("id"),
            "vm": e.get("vm"),
            "at": _ms(e.get("at_ms")),
            "kinds": ",".join(k for k in e.get("kinds", []) if k != "concurrent") or "concurrent",
            "writes": ",".join(h.get("dot", "") for h in e.get("heads", [])) or "-",
            "status": e.get("status"),
            "decided": _decided(e),
            "closed_by": ",".join(e.get("closed_by") or []) or "-",
        }
        for e in entries
    ]
    cols = ["id", "vm", "at", "kinds", "writes", "status", "decided", "closed_by"]
    where = f"{data.get('region')} ({data.get('node')})" if isinstance(data, dict) else ""
    _print(rows, False, cols, f"Conflicts seen by {where}")


@conflicts_group.command("show")
@click.argument("conflict_id")
@_url_option
@_json_option
def conflicts_show(conflict_id: str, urls: tuple[str, ...], as_json: bool) -> None:
    """One conflict: the concurrent writes, every contested field, who won and why, the
    values that were overwritten, and this node's events for it."""
    e = _run(lambda: NodeClient(urls).call("GET", f"/v1/conflicts/{conflict_id}"))
    if as_json or not isinstance(e, dict):
        click.echo(json.dumps(e, indent=2, sort_keys=True))
        return
    out = _console()
    out.print(
        f"[bold]{e.get('id')}[/bold] VM {e.get('vm')}: {', '.join(e.get('kinds', []))}; "
        f"status {e.get('status')}, resolution {e.get('resolution')}"
        + (f", closed by {', '.join(e['closed_by'])}" if e.get("closed_by") else "")
    )
    for h in e.get("heads", []):
        out.print(f"  write {h.get('dot')} by {h.get('region')} at HLC {h.get('hlc')}")
    if e.get("base"):
        out.print(f"  common ancestor: {e['base']}")
    table = Table(title="contested fields")
    for c in ("path", "strategy", "outcome", "value", "from", "overwritten", "why"):
        table.add_column(c)
    for f in e.get("fields", []):
        lost = "; ".join(
            f"{_cell(o.get('value'))} ({o.get('from')})" for o in f.get("overwritten", [])
        )
        table.add_row(
            str(f.get("path")),
            str(f.get("strategy")),
            str(f.get("outcome")),
            _cell(f.get("value")),
            str(f.get("from") or "-"),
            lost or "-",
            str(f.get("why")),
        )
    out.print(table)
    for path, dots in (e.get("merged") or {}).items():
        out.print(f"  merged without contest: {path} from {', '.join(dots)}")
    for ev in e.get("events", []):
        out.print(f"  {_ms(ev.get('at'))} {ev.get('event')} ({ev.get('status')})")


@conflicts_group.command("resolve")
@click.argument("conflict_id")
@click.option("--pick", help="take every contested value from this write (e.g. us-west1:4)")
@click.option(
    "--set",
    "values",
    multiple=True,
    metavar="PATH=JSON",
    help="set a contested path (repeatable), e.g. --set labels.team='\"blue\"'",
)
@click.option(
    "--accept/--discard",
    default=None,
    help="a write parked under a stale fencing epoch: apply it, or drop it",
)
@_url_option
@_json_option
def conflicts_resolve(
    conflict_id: str,
    pick: str | None,
    values: tuple[str, ...],
    accept: bool | None,
    urls: tuple[str, ...],
    as_json: bool,
) -> None:
    """Decide a conflict by hand (a write on top of the merged record; every region learns
    the decision with it)."""
    body: dict[str, Any] = {}
    if pick:
        body["pick"] = pick
    if values:
        parsed: dict[str, Any] = {}
        for v in values:
            path, sep, raw = v.partition("=")
            if not sep or not path:
                raise click.BadParameter(f"{v!r}: PATH=JSON expected", param_hint="--set")
            try:
                parsed[path] = json.loads(raw)
            except ValueError:
                parsed[path] = raw  # a bare word is a string
        body["values"] = parsed
    if accept is not None:
        body["accept"] = accept
    if len(body) != 1:
        raise click.UsageError("give exactly one of --pick, --set or --accept/--discard")
    data = _run(lambda: NodeClient(urls).call("POST", f"/v1/conflicts/{conflict_id}/resolve", body))
    _print(data if as_json else _vm_rows(data), as_json, VM_COLUMNS, f"resolved {conflict_id}")


@conflicts_group.command("rollback")
@click.argument("conflict_id")
@_url_option
@_json_option
def conflicts_rollback(conflict_id: str, urls: tuple[str, ...], as_json: bool) -> None:
    """Undo a conflict's resolution: its decided fields go back to the common ancestor's
    values and the conflict waits for a manual decision (resolve)."""
    data = _run(lambda: NodeClient(urls).call("POST", f"/v1/conflicts/{conflict_id}/rollback"))
    _print(data if as_json else _vm_rows(data), as_json, VM_COLUMNS, f"rolled back {conflict_id}")
