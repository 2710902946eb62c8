"""``novacron health``, ``novacron forecast`` and ``novacron debug profile``."""

from __future__ import annotations

import csv
import json
import sys
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from novacron_core.observe import federation
from novacron_core.observe import forecast as fc

_prometheus_option = click.option(
    "--prometheus",
    envvar="NOVACRON_PROMETHEUS_URL",
    help="Prometheus base URL, e.g. http://127.0.0.1:9090 [NOVACRON_PROMETHEUS_URL]",
)


def _get_json(url: str, timeout: float) -> Any:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as e:
        try:
            body = json.loads(e.read())
            detail = body.get("title") or body.get("error") or body
        except ValueError:
            detail = e.reason
        raise click.ClickException(f"{url}: {e.code} {detail}") from None
    except (urllib.error.URLError, OSError) as e:
        raise click.ClickException(f"{url}: unreachable ({e})") from None


def _fmt(v: float | None, pattern: str = "{:.2f}") -> str:
    return "-" if v is None else pattern.format(v)


@click.command("health")
@_prometheus_option
@click.option("--url", help="a node's URL: its own view (GET /v1/observe/health)")
@click.option("--json", "as_json", is_flag=True, help="Print JSON, not tables.")
def health_command(prometheus: str | None, url: str | None, as_json: bool) -> None:
    """Regional health scores (0-100, with their breakdown) and SLO burn rates.

    \b
    With --prometheus: every region Prometheus scrapes (the federation summary).
    With --url: one node's view of its region.
    """
    if not prometheus and not url:
        raise click.UsageError("give --prometheus URL (all regions) or --url NODE_URL")
    if url:
        data = _get_json(url.rstrip("/") + "/v1/observe/health", 10)
        if as_json:
            click.echo(json.dumps(data, indent=2, sort_keys=True))
            return
        t = Table(title=f"Region {data.get('region')} health {data.get('score')}")
        for col in ("component", "input", "score", "weight", "points"):
            t.add_column(col)
        for name, c in data["components"].items():
            t.add_row(name, str(c["input"]), str(c["score"]), str(c["weight"]), str(c["points"]))
        Console(file=sys.stdout).print(t)
        return
    assert prometheus is not None
    print_federation(prometheus, as_json)


def print_federation(prometheus: str, as_json: bool = False) -> None:
    """The federation summary table (also under ``novacron status --prometheus``)."""
    try:
        summary = federation.from_prometheus(prometheus)
    except (OSError, ValueError) as e:
        raise click.ClickException(f"{prometheus}: {e}") from None
    if as_json:
        click.echo(summary.model_dump_json(indent=2))
        return
    t = Table(title=f"NovaCron federation: health {_fmt(summary.health, '{:.0f}')}")
    for col in ("region", "nodes", "leader", "health", "weakest input", "SLO burn 1h / 6h"):
        t.add_column(col)
    for r in summary.regions:
        weakest = min(r.components.items(), key=lambda kv: kv[1], default=None)
        burns = ", ".join(
            f"{name} {_fmt(s.burn_rate.get('1h'))}/{_fmt(s.burn_rate.get('6h'))}"
            for name, s in sorted(r.slos.items())
        )
        t.add_row(
            r.region,
            str(r.nodes),
            "yes" if r.leader else "NO",
            _fmt(r.health, "{:.0f}"),
            f"{weakest[0]} {weakest[1]:.2f}" if weakest else "-",
            burns or "-",
        )
    Console(file=sys.stdout).print(t)


def _read_csv(path: Path) -> list[tuple[float, float]]:
    """``timestamp,value`` rows (unix seconds or ISO 8601 timestamps)."""
    out = []
    with open(path) as f:
        for row in csv.reader(f):
            if len(row) < 2:
                continue
            try:
                value = float(row[1])
            except ValueError:
                continue  # a header
            try:
                t = float(row[0])
            except ValueError:
                try:
                    t = datetime.fromisoformat(row[0].strip()).timestamp()
                except ValueError:
                    raise click.ClickException(f"{path}: bad timestamp {row[0]!r}") from None
            out.append((t, value))
    return out


def _range_query(base: str, expr: str, days: int) -> list[tuple[float, float]]:
    import time

    end = time.time()
    q = urllib.parse.urlencode(
        {"query": expr, "start": end - days * 86400, "end": end, "step": "3600"}
    )
    body = _get_json(base.rstrip("/") + "/api/v1/query_range?" + q, 30)
    result = body.get("data", {}).get("result", [])
    if len(result) != 1:
        raise click.ClickException(
            f"{expr}: {len(result)} series; aggregate to one (e.g. sum(...))"
        )
    return [(float(t), float(v)) for t, v in result[0]["values"]]


@click.command("forecast")
@click.option("--csv", "csv_file", type=click.Path(exists=True, path_type=Path))
@_prometheus_option
@click.option(
    "--query", help="with --prometheus: one series, e.g. 'sum(novacron_raft_commit_index)'"
)
@click.option("--history-days", type=click.IntRange(14, 3650), default=180, show_default=True)
@click.option("--url", help="a node's URL: forecast its stored history (/v1/observe/forecast)")
@click.option(
    "--metric",
    type=click.Choice(["log_index", "keys", "requests_total"]),
    default="keys",
    show_default=True,
    help="with --url: which stored series",
)
@click.option("--horizons", default="30,60,90", show_default=True, help="days ahead")
@click.option("--json", "as_json", is_flag=True)
def forecast_command(
    csv_file: Path | None,
    prometheus: str | None,
    query: str | None,
    history_days: int,
    url: str | None,
    metric: str,
    horizons: str,
    as_json: bool,
) -> None:
    """Capacity forecast 30/60/90 days ahead with 95 % prediction intervals (ETS).

    \b
    Sources (one of):
      --csv FILE                     timestamp,value rows
      --prometheus URL --query EXPR  hourly history of one series
      --url NODE                     the node's own stored history
    """
    try:
        hs = sorted({int(h) for h in horizons.split(",") if h.strip()})
    except ValueError:
        raise click.BadParameter("comma-separated whole days", param_hint="--horizons") from None
    if not hs or hs[0] < 1 or hs[-1] > 366:
        raise click.BadParameter("between 1 and 366 days", param_hint="--horizons")
    sources = [x for x in (csv_file, prometheus, url) if x]
    if len(sources) != 1:
        raise click.UsageError("give exactly one of --csv, --prometheus (with --query), --url")
    if url:
        q = urllib.parse.urlencode({"metric": metric, "horizons": ",".join(map(str, hs))})
        data = _get_json(url.rstrip("/") + "/v1/observe/forecast?" + q, 60)
    else:
        if csv_file is not None:
            samples, name = _read_csv(csv_file), csv_file.name
        else:
            if not query:
                raise click.UsageError("--prometheus needs --query")
            assert prometheus is not None
            samples, name = _range_query(prometheus, query, history_days), query
        try:
            data = fc.forecast(name, samples, hs).as_dict()
        except fc.ForecastUnavailable as e:
            raise click.ClickException(str(e)) from None
    if as_json:
        click.echo(json.dumps(data, indent=2, sort_keys=True))
        return
    t = Table(
        title=f"{data['metric']}: {data['method']} on {data['history_days']} days "
        f"(last {data['last_value']:.6g})"
    )
    for col in ("days ahead", "forecast", f"{data['interval']:.0%} interval"):
        t.add_column(col)
    for p in data["forecast"]:
        t.add_row(str(p["days_ahead"]), f"{p['mean']:.6g}", f"{p['lower']:.6g} .. {p['upper']:.6g}")
    Console(file=sys.stdout).print(t)


@click.group("debug")
def debug_group() -> None:
    """Diagnostics of a running node."""


@debug_group.command("profile")
@click.option("--url", required=True, envvar="NOVACRON_URL", help="the node's URL [NOVACRON_URL]")
@click.option("--seconds", type=click.FloatRange(0.1, 60), default=10, show_default=True)
@click.option(
    "--mode",
    type=click.Choice(["auto", "py-spy", "cprofile"]),
    default="auto",
    show_default=True,
    help="auto: py-spy when installed and allowed, else cProfile",
)
@click.option("--memory", is_flag=True, help="a tracemalloc snapshot instead of a CPU profile")
@click.option("--top", type=click.IntRange(1, 200), default=25, show_default=True)
@click.option("--output", type=click.Path(path_type=Path), help="write the raw profile here")
@click.option("--json", "as_json", is_flag=True)
def profile_command(
    url: str,
    seconds: float,
    mode: str,
    memory: bool,
    top: int,
    output: Path | None,
    as_json: bool,
) -> None:
    """Profile a running node: CPU for --seconds (py-spy or cProfile), or its memory.

    The node's /debug API must be on (it is unless NOVACRON_DEBUG_API=false). py-spy's raw
    output (--output) is collapsed stacks: feed it to flamegraph.pl or speedscope.
    """
    base = url.rstrip("/")
    if memory:
        data = _get_json(f"{base}/debug/profile/memory?top={top}", 60)
        if as_json:
            click.echo(json.dumps(data, indent=2))
            return
        t = Table(title=f"traced {data['traced_bytes']:,} bytes (peak {data['peak_bytes']:,})")
        for col in ("where", "bytes", "blocks"):
            t.add_column(col)
        for row in data["top"]:
            t.add_row(row["where"], f"{row['bytes']:,}", str(row["blocks"]))
        Console(file=sys.stdout).print(t)
        if data.get("tracing_since_this_call"):
            click.echo("tracemalloc started with this call: run it again after some load.")
        return
    q = urllib.parse.urlencode({"seconds": seconds, "mode": mode})
    data = _get_json(f"{base}/debug/profile/cpu?{q}", seconds + 30)
    if output is not None:
        output.write_text(data["text"])
    if as_json:
        click.echo(json.dumps({k: v for k, v in data.items() if k != "text"}, indent=2))
        return
    t = Table(title=f"CPU profile ({data['mode']}, {data['seconds']:g}s)")
    cols = list(data["top"][0]) if data["top"] else ["function"]
    for col in cols:
        t.add_column(col)
    for row in data["top"][:top]:
        t.add_row(*(f"{row[c]:.4g}" if isinstance(row[c], float) else str(row[c]) for c in cols))
    Console(file=sys.stdout).print(t)
