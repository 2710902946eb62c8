"""Performing the active health checks the balancer schedules (the I/O half of
``balancing.health``): a TCP connect, an HTTP(S) GET, or a named custom check."""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
from collections.abc import Awaitable, Callable

from novacron_core.balancing import Backend, CheckSpec, Verdict

CustomCheck = Callable[[Backend, CheckSpec], Awaitable[tuple[Verdict, str]]]


async def _http_get(
    b: Backend, path: str, limit_s: float, ssl_ctx: ssl.SSLContext | None
) -> tuple[int, bytes]:
    async with asyncio.timeout(limit_s):
        reader, writer = await asyncio.open_connection(b.host, b.port, ssl=ssl_ctx)
        try:
            writer.write(
                f"GET {path} HTTP/1.1\r\nHost: {b.address}\r\nUser-Agent: novacron-gateway\r\n"
                "Connection: close\r\n\r\n".encode()
            )
            line = await reader.readline()
            parts = line.split(b" ", 2)
            if len(parts) < 2 or not parts[1].isdigit():
                raise ValueError(f"not an HTTP answer: {line[:60]!r}")
            body = await reader.read(64 << 10)
            return int(parts[1]), body.partition(b"\r\n\r\n")[2]
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


async def novacron_member(b: Backend, spec: CheckSpec) -> tuple[Verdict, str]:
    """Healthy when the node answers ``/v1/cluster`` and counts itself a member (not a
    node removed from its group, or one waiting to be replaced after losing its data)."""
    status, body = await _http_get(b, "/v1/cluster", spec.timeout_s, None)
    if status != 200:
        return Verdict.FAILED, f"/v1/cluster answered {status}"
    try:
        doc = json.loads(body)
    except ValueError:
        return Verdict.FAILED, "/v1/cluster: not JSON"
    members = set(doc.get("voters", [])) | set(doc.get("learners", []))
    if doc.get("rejoining") or doc.get("id") not in members:
        return Verdict.FAILED, "not a member of its group"
    return Verdict.OK, "member"


CUSTOM_CHECKS: dict[str, CustomCheck] = {"novacron-member": novacron_member}


async def probe(b: Backend, spec: CheckSpec, ssl_ctx: ssl.SSLContext | None) -> tuple[Verdict, str]:
    try:
        if spec.kind == "tcp":
            async with asyncio.timeout(spec.timeout_s):
                _, writer = await asyncio.open_connection(b.host, b.port)
            writer.close()
            return Verdict.OK, "connected"
        if spec.kind == "custom":
            check = CUSTOM_CHECKS.get(spec.custom)
            if check is None:
                return Verdict.FAILED, f"no custom check named {spec.custom!r}"
            async with asyncio.timeout(spec.timeout_s):
                return await check(b, spec)
        ctx = ssl_ctx if spec.kind == "https" else None
        if spec.kind == "https" and ctx is None:
            ctx = ssl.create_default_context()
        status, _ = await _http_get(b, spec.path, spec.timeout_s, ctx)
        lo, hi = spec.expect_status
        if lo <= status <= hi:
            return Verdict.OK, f"{spec.path} {status}"
        return Verdict.FAILED, f"{spec.path} answered {status}"
    except ConnectionRefusedError:
        return Verdict.REFUSED, "connection refused"
    except TimeoutError:
        return Verdict.FAILED, f"no answer within {spec.timeout_s}s"
    except (OSError, ValueError, ssl.SSLError) as e:
        return Verdict.FAILED, f"{type(e).__name__}: {e}"[:160]
