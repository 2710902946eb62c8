"""The follower's forwarding client: it never re-sends a request on its own, and it says
whether a failed attempt ever connected (outcome unknown) or not (certainly not sent)."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from novacron_core.runtime.forward import Attempt, LostAfterConnect, forward_session
from tests.runtime.procs import free_ports


class DropsEveryRequest:
    """An HTTP server that reads each request whole, then closes the connection without a
    response: what a leader killed right after it took a write looks like."""

    def __init__(self) -> None:
        self.requests = 0

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(
            (int(line.split(b":")[1]) for line in head.split(b"\r\n")
             if line.lower().startswith(b"content-length:")),
            0,
        )  # fmt: skip
        await reader.readexactly(length)
        self.requests += 1
        writer.close()


@pytest.mark.parametrize("method", ["PUT", "DELETE", "POST"])
async def test_a_request_lost_after_connecting_is_not_sent_again(method: str) -> None:
    server = DropsEveryRequest()
    srv = await asyncio.start_server(server.serve, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    try:
        async with forward_session(5.0) as http:
            attempt = Attempt()
            with pytest.raises(LostAfterConnect):
                async with http.request(
                    method, f"http://127.0.0.1:{port}/v1/kv/k", data=b"v", trace_request_ctx=attempt
                ):
                    pass
            assert attempt.connected
        assert server.requests == 1  # aiohttp alone re-sends PUT and DELETE: 2
    finally:
        srv.close()
        await srv.wait_closed()


async def test_plain_aiohttp_would_have_sent_it_twice() -> None:
    """What the forwarding client guards against (if this stops holding, aiohttp changed)."""
    server = DropsEveryRequest()
    srv = await asyncio.start_server(server.serve, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    try:
        async with aiohttp.ClientSession() as http:
            with pytest.raises(aiohttp.ClientError):
                async with http.put(f"http://127.0.0.1:{port}/v1/kv/k", data=b"v"):
                    pass
        assert server.requests == 2
    finally:
        srv.close()
        await srv.wait_closed()


async def test_a_refused_connection_is_known_not_sent() -> None:
    (port,) = free_ports(1)
    async with forward_session(5.0) as http:
        attempt = Attempt()
        with pytest.raises(aiohttp.ClientConnectorError):
            async with http.put(f"http://127.0.0.1:{port}/", data=b"v", trace_request_ctx=attempt):
                pass
        assert not attempt.connected
