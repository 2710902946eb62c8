"""``novacron kv put|get|delete|cas``: the region's KV store, over the wire API by default
(``--transport wire``: the node's HTTP port + 1), falling back to the HTTP API when no
node's wire port accepts a connection (nothing was sent, so trying HTTP is safe);
``--transport http`` uses only HTTP."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote, urlsplit

import click

from novacron_core.client import ClientError, NodeClient, NodeUnreachable, OutcomeUnknown
from novacron_core.wire.client import WireClient

DEFAULT_URL = "http://127.0.1.1:8080"
WIRE_OFFSET = 1  # the node's default --wire-port-offset

_url = click.option(
    "--url",
    "urls",
    multiple=True,
    envvar="NOVACRON_URL",
    default=[DEFAULT_URL],
    show_default=True,
    help="Node HTTP URL; repeat for several. The wire API is at its port + 1 (the nodes' "
    "--wire-port-offset). Env: NOVACRON_URL.",
)
_transport = click.option(
    "--transport",
    type=click.Choice(["wire", "http"]),
    default="wire",
    show_default=True,
    envvar="NOVACRON_TRANSPORT",
    help="wire: pipelined msgpack frames (falls back to HTTP when no wire port answers); "
    "http: the HTTP API only. Env: NOVACRON_TRANSPORT.",
)
_timeout = click.option(
    "--timeout", type=float, default=5.0, show_default=True, help="deadline in seconds"
)


def wire_addrs(urls: tuple[str, ...], offset: int = WIRE_OFFSET) -> list[str]:
    out = []
    for u in urls:
        parts = urlsplit(u if "://" in u else f"http://{u}")
        if not parts.hostname:
            raise click.BadParameter(f"not a node URL: {u!r}", param_hint="--url")
        out.append(f"{parts.hostname}:{(parts.port or 80) + offset}")
    return out


def _run(
    urls: tuple[str, ...],
    transport: str,
    timeout: float,
    wire: Callable[[WireClient], Awaitable[Any]],
    http: Callable[[NodeClient], Any],
) -> Any:
    try:
        if transport == "wire":

            async def go() -> Any:
                async with WireClient(wire_addrs(urls), timeout=timeout) as c:
                    return await wire(c)

            try:
                return asyncio.run(go())
            except NodeUnreachable as e:
                if "nothing was sent" not in str(e):
                    raise
                click.echo(f"(wire API unreachable, using HTTP: {e})", err=True)
        return http(NodeClient(list(urls), timeout=timeout))
    except (NodeUnreachable, OutcomeUnknown, ClientError) as e:
        # each says whether the request was applied (the error contract, docs/api.md)
        raise click.ClickException(str(e)) from None


def _path(key: str) -> str:
    return "/v1/kv/" + quote(key, safe="/")


@click.group("kv")
def kv_group() -> None:
    """The region's replicated KV store (what the raft benchmark writes)."""


@kv_group.command("put")
@click.argument("key")
@click.argument("value")
@_url
@_transport
@_timeout
def kv_put(key: str, value: str, urls: tuple[str, ...], transport: str, timeout: float) -> None:
    """Set KEY to VALUE (exactly once, even when re-sent after a broken connection)."""
    data = value.encode()
    _run(
        urls,
        transport,
        timeout,
        lambda c: c.put(key, data),
        lambda h: _http_put(h, key, data),
    )
    click.echo("ok")


def _http_put(h: NodeClient, key: str, data: bytes) -> Any:
    # NodeClient sends JSON bodies; a KV value is the raw body, so go one level down
    import http.client

    from novacron_core.client import Response

    for base in h.urls:
        parts = urlsplit(base)
        conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=h.timeout)
        try:
            conn.request("PUT", _path(key), body=data)
            r = conn.getresponse()
            raw = r.read()
        except OSError:
            continue
        finally:
            conn.close()
        body = json.loads(raw) if raw else None
        resp = Response(r.status, body, base, dict(r.getheaders()))
        if resp.status >= 400:
            raise ClientError(resp.status, resp.body, base + _path(key))
        return resp.body
    raise NodeUnreachable("no node answered over HTTP either: nothing was applied")


@kv_group.command("get")
@click.argument("key")
@_url
@_transport
@_timeout
def kv_get(key: str, urls: tuple[str, ...], transport: str, timeout: float) -> None:
    """Print KEY's value (exit 1 when absent)."""

    def http(h: NodeClient) -> bytes | None:
        resp = h.request("GET", _path(key))
        if resp.status == 404:
            return None
        if resp.status >= 400:
            raise ClientError(resp.status, resp.body, resp.url)
        b = resp.body  # (NodeClient parses JSON bodies, else decodes them as text)
        return (b if isinstance(b, str) else json.dumps(b)).encode()

    got = _run(urls, transport, timeout, lambda c: c.get(key), http)
    if got is None:
        click.echo(f"{key}: no such key", err=True)
        sys.exit(1)
    click.echo(got.decode(errors="replace"))


@kv_group.command("delete")
@click.argument("key")
@_url
@_transport
@_timeout
def kv_delete(key: str, urls: tuple[str, ...], transport: str, timeout: float) -> None:
    """Delete KEY; says whether it existed."""
    existed = _run(
        urls,
        transport,
        timeout,
        lambda c: c.delete(key),
        lambda h: bool(h.call("DELETE", _path(key)).get("existed")),
    )
    click.echo("deleted" if existed else "absent")


@kv_group.command("cas")
@click.argument("key")
@click.option("--expected", help="the value KEY must hold now (omit: KEY must be absent)")
@click.option("--value", "new", help="the value to set (omit: delete KEY)")
@_url
@_transport
@_timeout
def kv_cas(
    key: str,
    expected: str | None,
    new: str | None,
    urls: tuple[str, ...],
    transport: str,
    timeout: float,
) -> None:
    """Compare-and-swap: set KEY to --value only if it holds --expected."""
    exp = None if expected is None else expected.encode()
    val = None if new is None else new.encode()

    def http(h: NodeClient) -> tuple[bool, bytes | None]:
        body = h.call(
            "POST", "/v1/cas/" + quote(key, safe="/"), {"expected": expected, "value": new}
        )
        cur = body.get("current")
        return bool(body.get("swapped")), None if cur is None else str(cur).encode()

    swapped, current = _run(urls, transport, timeout, lambda c: c.cas(key, exp, val), http)
    if swapped:
        click.echo("swapped")
        return
    shown = "absent" if current is None else current.decode(errors="replace")
    raise click.ClickException(f"not swapped: {key} holds {shown} (not applied)")
