"""``novacron backup list|create|restore|ship|prune`` and ``novacron dr force-new-group``."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn
from rich.table import Table

from novacron_core.dr import agent, catalog, retention
from novacron_core.dr.catalog import FULL, INCR, LOG, NotRestorable
from novacron_core.dr.crypto import IntegrityError, load_key
from novacron_core.dr.repo import BackupRepo
from novacron_core.dr.restore import force_new_group, loss_window, prepare_force, restore, survey
from novacron_core.dr.targets import TargetError, open_target
from novacron_core.runtime.storage import CorruptLogError

err = Console(stderr=True)


def _repo(target: str, group: str, key_file: str | None, endpoint: str | None) -> BackupRepo:
    try:
        key = load_key(key_file) if key_file else None
        return BackupRepo(open_target(target, endpoint), group, key)
    except (ValueError, OSError, TargetError) as e:
        raise click.UsageError(str(e)) from None


def _target_options(f: Callable[..., Any]) -> Callable[..., Any]:
    f = click.option(
        "--key-file",
        envvar="NOVACRON_BACKUP_KEY_FILE",
        type=click.Path(exists=True, dir_okay=False),
        help="256-bit AES-GCM key (raw, hex or base64; a mounted Secret) "
        "[NOVACRON_BACKUP_KEY_FILE]; without it objects are stored unencrypted",
    )(f)
    f = click.option(
        "--s3-endpoint",
        envvar="NOVACRON_S3_ENDPOINT",
        help="S3 endpoint for s3:// targets, http://host:port or https://host "
        "[NOVACRON_S3_ENDPOINT]; credentials from NOVACRON_S3_ACCESS_KEY/SECRET_KEY",
    )(f)
    f = click.option("--group", default="region", show_default=True, help="the group's name")(f)
    f = click.option(
        "--target",
        envvar="NOVACRON_BACKUP_TARGET",
        required=True,
        help="a directory (file:///path) or s3://bucket/prefix [NOVACRON_BACKUP_TARGET]",
    )(f)
    return f


def _when(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S")


@click.group("backup")
def backup_group() -> None:
    """Back up a region's group and restore it to any committed point (docs/dr.md).

    \b
    Backups are taken beside a node, reading its data dir: full snapshots, incrementals
    (what changed since the last) and the committed log shipped continuously (`ship`), so
    any committed index, or the state at a point in time, can be restored into an empty
    data dir as a new group.
    """


@backup_group.command("list")
@_target_options
def list_command(target: str, group: str, key_file: str | None, s3_endpoint: str | None) -> None:
    """List the backups and the recoverability window."""
    repo = _repo(target, group, key_file, s3_endpoint)
    objs = repo.objects()
    table = Table(title=f"{repo.target.url} group {group}")
    for col in ("kind", "indexes", "shipped (UTC)", "bytes", "encrypted"):
        table.add_column(col)
    for o in objs:
        span = str(o.last) if o.kind != LOG else f"{o.first}..{o.last}"
        if o.kind == INCR:
            span = f"{o.parent}->{o.last}"
        table.add_row(
            o.kind, span, _when(o.shipped_at), str(o.size), "yes" if o.encrypted else "no"
        )
    Console().print(table)
    first, last = catalog.window(objs)
    if last:
        click.echo(f"restorable: index {first}..{last}")
    else:
        click.echo("nothing restorable yet: take a full backup (novacron backup create)")


def _take(repo: BackupRepo, node: str, data_dir: Path, kind: str) -> agent.Taken:
    commit = agent.node_commit(node)
    return agent.create(repo, data_dir, commit, kind, time.time())


_node_opts = [
    click.option("--node", required=True, help="the node's HTTP URL (its commit index)"),
    click.option(
        "--data-dir",
        required=True,
        type=click.Path(exists=True, file_okay=False, path_type=Path),
        help="the node's data dir (the backup reads its log; mount the same volume)",
    ),
]


def _node_options(f: Callable[..., Any]) -> Callable[..., Any]:
    for opt in reversed(_node_opts):
        f = opt(f)
    return f


@backup_group.command("create")
@_target_options
@_node_options
@click.option("--kind", type=click.Choice([FULL, INCR, LOG]), default=FULL, show_default=True)
def create_command(
    target: str,
    group: str,
    key_file: str | None,
    s3_endpoint: str | None,
    node: str,
    data_dir: Path,
    kind: str,
) -> None:
    """Take one backup: a full snapshot, an incremental or the log shipped so far."""
    repo = _repo(target, group, key_file, s3_endpoint)
    try:
        taken = _take(repo, node, data_dir, kind)
    except agent.NodeUnreachable as e:
        raise click.ClickException(f"{e}; nothing was written") from None
    except agent.LogGap as e:
        raise click.ClickException(str(e)) from None
    except TargetError as e:
        raise click.ClickException(f"{e}; the backup may be incomplete, list to check") from None
    click.echo(taken.detail if taken.meta is None else f"{taken.detail}: {taken.meta.key}")


@backup_group.command("ship")
@_target_options
@_node_options
@click.option(
    "--every", type=float, default=1.0, show_default=True, help="seconds between log shipments"
)
@click.option("--full-every", type=float, default=86400.0, show_default=True, help="seconds")
@click.option("--incremental-every", type=float, default=3600.0, show_default=True, help="seconds")
@click.option("--prune/--no-prune", default=True, help="apply retention after each base backup")
def ship_command(
    target: str,
    group: str,
    key_file: str | None,
    s3_endpoint: str | None,
    node: str,
    data_dir: Path,
    every: float,
    full_every: float,
    incremental_every: float,
    prune: bool,
) -> None:
    """Run continuously: ship committed log entries every --every seconds, with full and
    incremental backups on schedule and retention applied (hourly 7d, daily 30d, weekly
    90d, monthly 1y). Stops cleanly on SIGTERM/Ctrl-C."""
    repo = _repo(target, group, key_file, s3_endpoint)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.is_set():
        try:
            kind = catalog.due(repo.objects(), time.time(), full_every, incremental_every)
            try:
                taken = _take(repo, node, data_dir, kind)
            except agent.LogGap:
                taken = _take(repo, node, data_dir, FULL)
            if taken.meta is not None:
                click.echo(f"{taken.detail}: {taken.meta.key}")
                if prune and taken.meta.kind != LOG:
                    for o in retention.expired(repo.objects(), time.time(), retention.Policy()):
                        repo.delete(o)
                        click.echo(f"expired {o.key}")
        except (agent.NodeUnreachable, TargetError) as e:
            err.print(f"[yellow]will retry[/]: {e}")
        stop.wait(every)


@backup_group.command("prune")
@_target_options
def prune_command(target: str, group: str, key_file: str | None, s3_endpoint: str | None) -> None:
    """Delete what the retention policy no longer keeps."""
    repo = _repo(target, group, key_file, s3_endpoint)
    for o in retention.expired(repo.objects(), time.time(), retention.Policy()):
        repo.delete(o)
        click.echo(f"expired {o.key}")


def _members(spec: str) -> dict[str, tuple[str, str]]:
    out = {}
    for item in filter(None, (p.strip() for p in spec.split(","))):
        node, sep, addrs = item.partition("=")
        peer, _, http = addrs.partition("/")
        if not sep or not peer or not http:
            raise click.BadParameter(
                f"{item!r}: NODE=host:peerport/host:httpport", param_hint="--peers"
            )
        out[node] = (peer, http)
    return out


@contextmanager
def _bar(label: str, total: int) -> Iterator[Callable[[int], None]]:
    cols = (BarColumn(), DownloadColumn(), TransferSpeedColumn())
    with Progress(*Progress.get_default_columns()[:1], *cols, console=err) as p:
        task = p.add_task(label, total=total)
        yield lambda n: p.advance(task, n)


@backup_group.command("restore")
@_target_options
@click.option(
    "--data-dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="an empty data dir for the new group's first node",
)
@click.option(
    "--peers",
    required=True,
    help="the new group's members n1=host:port/host:httpport,... (as `novacron node` takes)",
)
@click.option("--index", type=int, help="restore this committed index")
@click.option("--time", "at", help="restore what was shipped by then (ISO 8601 or unix seconds)")
def restore_command(
    target: str,
    group: str,
    key_file: str | None,
    s3_endpoint: str | None,
    data_dir: Path,
    peers: str,
    index: int | None,
    at: str | None,
) -> None:
    """Restore into an empty data dir as a new group (default: the newest point), verified
    by the Merkle root of the state read back. Then start the node on that data dir with
    the same --peers (copy the data dir to each member's, or add them as learners)."""
    if index is not None and at is not None:
        raise click.UsageError("--index and --time are exclusive")
    when = _parse_time(at) if at is not None else None
    repo = _repo(target, group, key_file, s3_endpoint)
    members = _members(peers)
    objs = repo.objects()
    try:
        idx = catalog.index_at(objs, when) if when is not None else index
        plan = catalog.plan(objs, idx)
        with _bar(f"restoring index {plan.index}", sum(o.size for o in plan.objects)) as adv:
            done = restore(repo, data_dir, members, plan.index, progress=adv)
    except (NotRestorable, FileExistsError) as e:
        raise click.ClickException(f"{e}; nothing was written") from None
    except (IntegrityError, TargetError) as e:
        raise click.ClickException(f"{e}; the data dir is not usable, empty it") from None
    click.echo(
        f"restored index {done.index} (term {done.term}): {done.keys} keys, "
        f"Merkle root {done.root} verified in {done.data_dir}"
    )


def _parse_time(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        pass
    try:
        d = datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(
            f"{text!r}: ISO 8601 or unix seconds", param_hint="--time"
        ) from None
    return (d if d.tzinfo else d.replace(tzinfo=UTC)).timestamp()


@click.group("dr")
def dr_group() -> None:
    """Disaster recovery of a region's group (docs/runbooks/)."""


@dr_group.command("force-new-group")
@click.option(
    "--data-dir",
    "data_dirs",
    multiple=True,
    required=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="a surviving (stopped) node's data dir; repeat for each survivor: the most up to "
    "date is rebuilt",
)
@click.option("--node-id", required=True, help="the survivor's node id")
@click.option(
    "--peers", "peers_spec", help="the node's --peers: its addresses are taken from there"
)
@click.option("--peer", help="its peer host:port (default: from --peers or the old membership)")
@click.option("--http", help="its HTTP host:port (default: from the old membership)")
@click.option("--last-known-index", type=int, help="the group's last commit index known")
@click.option("--target", help="a backup target: its last shipped index is the last known")
@click.option("--group", default="region", show_default=True)
@click.option("--s3-endpoint", envvar="NOVACRON_S3_ENDPOINT")
@click.option("--yes", is_flag=True, help="do not ask for confirmation")
def force_new_group_command(
    data_dirs: tuple[Path, ...],
    node_id: str,
    peers_spec: str | None,
    peer: str | None,
    http: str | None,
    last_known_index: int | None,
    target: str | None,
    group: str,
    s3_endpoint: str | None,
    yes: bool,
) -> None:
    """Rebuild a group that lost its quorum for good from the most up-to-date survivor, as a
    one-member group (then add members back as learners). Stop the survivors first. States
    the data-loss window and asks before it acts; the old log is kept beside the new one."""
    try:
        survivors = survey(list(data_dirs))
    except (FileNotFoundError, CorruptLogError) as e:
        raise click.ClickException(f"{e}; nothing was changed") from None
    for s in survivors:
        click.echo(f"survivor {s.data_dir}: last index {s.last_index} (term {s.last_term})")
    best = survivors[0]
    known = last_known_index
    if known is None and target is not None:
        objs = _repo(target, group, None, s3_endpoint).objects()
        known = max((o.last for o in objs), default=None)
    address = (peer, http) if peer and http else None
    if address is None and peers_spec:
        address = _members(peers_spec).get(node_id)
    try:
        forced = prepare_force(best, node_id, address)
    except ValueError as e:
        raise click.ClickException(f"{e}; nothing was changed") from None
    click.echo(f"rebuilding from {best.data_dir}: {loss_window(known, best)}")
    if not yes and not click.confirm("force a new one-member group from it?"):
        raise click.ClickException("aborted; nothing was changed")
    try:
        done = force_new_group(forced)
    except IntegrityError as e:
        raise click.ClickException(str(e)) from None
    click.echo(
        f"new group of {node_id} at index {done.index} (term {done.term}): {done.keys} keys, "
        f"Merkle root {done.root} verified; start the node, then add members as learners"
    )
