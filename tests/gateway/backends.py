"""Real HTTP servers (aiohttp) behind the gateway in tests, each with a behaviour a test
needs (echo, stream, die mid-request, answer 503 first...) and a count of what it saw."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from aiohttp import web

from novacron_core.runtime.gateway.config import load_config
from novacron_core.runtime.gateway.server import Gateway


@dataclass
class Backend:
    name: str
    seen: Counter[str] = field(default_factory=Counter)
    flaky_503: int = 0
    runner: web.AppRunner | None = None
    port: int = 0

    def app(self) -> web.Application:
        app = web.Application(client_max_size=8 << 20)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        self.seen[f"{request.method} {path}"] += 1
        if path == "/healthz":
            return web.json_response({"ok": True})
        body = await request.read()
        last = path.rsplit("/", 1)[-1]
        if last == "die":
            # read the request, then drop the connection without a word
            assert request.transport is not None
            request.transport.abort()
            await asyncio.sleep(1)
            return web.Response()
        if last == "flaky" and self.flaky_503 > 0:
            self.flaky_503 -= 1
            return web.json_response(
                {"error": "no leader"}, status=503, headers={"Retry-After": "1"}
            )
        if last == "slow":
            await asyncio.sleep(float(request.query.get("s", "0.5")))
        if last == "stream":
            resp = web.StreamResponse()
            resp.enable_chunked_encoding()
            await resp.prepare(request)
            for i in range(int(request.query.get("n", "64"))):
                await resp.write(bytes([65 + i % 26]) * 16384)
            await resp.write_eof()
            return resp
        if path.startswith("/v1/vms/") and request.method == "GET":
            vm = path.rsplit("/", 1)[-1]
            return web.json_response({"id": vm, "home_region": self.name.split("/")[0]})
        return web.json_response(
            {
                "backend": self.name,
                "method": request.method,
                "path": path,
                "query": request.query_string,
                "headers": dict(request.headers),
                "body": body.decode(errors="replace"),
                "length": len(body),
            }
        )

    async def start(self) -> None:
        self.runner = web.AppRunner(self.app(), access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", self.port)
        await site.start()
        assert site._server is not None
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None


@contextlib.asynccontextmanager
async def gateway_over(
    backends: dict[str, list[Backend]], **settings: object
) -> AsyncIterator[tuple[Gateway, str]]:
    """A gateway (in this event loop) with fixed backends per region; yields it and its
    base URL once every backend passed its first health check."""
    for bs in backends.values():
        for b in bs:
            if b.runner is None:
                await b.start()
    specs = tuple(
        f"{region}=" + ",".join(f"127.0.0.1:{b.port}" for b in bs)
        for region, bs in backends.items()
    )
    values: dict[str, object] = {
        "listen": "127.0.0.1:0",
        "admin_listen": None,
        "health": {"interval_s": 0.2, "unhealthy_interval_s": 0.1, "timeout_s": 0.5},
        **settings,
    }
    cfg = load_config(None, None, (), specs, **values)
    gw = Gateway(cfg)
    await gw.start()
    try:
        for _ in range(200):
            if sum(r["available"] for r in gw.balancer.region_health().values()) == sum(
                len(bs) for bs in backends.values()
            ):
                break
            await asyncio.sleep(0.01)
        yield gw, f"http://127.0.0.1:{gw.bound_ports()[0]}"
    finally:
        await gw.stop()
        for bs in backends.values():
            for b in bs:
                await b.stop()


async def raw(port: int, data: bytes, read_s: float = 2.0) -> bytes:
    """Send raw bytes, return everything read until the server closes (or read_s)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    out = b""
    try:
        async with asyncio.timeout(read_s):
            while chunk := await reader.read(65536):
                out += chunk
    except TimeoutError:
        pass
    writer.close()
    return out


def problem(body: bytes) -> dict[str, object]:
    doc = json.loads(body.partition(b"\r\n\r\n")[2] if body.startswith(b"HTTP/") else body)
    assert isinstance(doc, dict)
    return doc
