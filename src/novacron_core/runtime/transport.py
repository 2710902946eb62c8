"""Peer transport: one outbound TCP connection per peer, length-prefixed codec frames.

A connection opens with a :class:`Hello` naming the sender; every later frame is a Raft
message record. A frame that does not decode (or is not a Raft message) closes that one
connection; the node and its other peers carry on. Outbound queues are bounded and drop
the newest message when full: Raft retransmits, so loss costs latency, never safety.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from novacron_core.codec import CodecError, FrameDecoder, decode, frame, record
from novacron_core.consensus.raft.messages import (
    Append,
    AppendResp,
    InstallSnapshot,
    TimeoutNow,
    Vote,
    VoteResp,
)

log = logging.getLogger(__name__)
RAFT_MESSAGES = (Vote, VoteResp, Append, AppendResp, InstallSnapshot, TimeoutNow)
MAX_FRAME = 64 << 20


@record(210)
@dataclass(frozen=True, slots=True)
class Hello:
    node: str
    cluster: str = "novacron"


def tls_contexts(
    cert: str | None, key: str | None, ca: str | None
) -> tuple[ssl.SSLContext | None, ssl.SSLContext | None]:
    """(server, client) contexts for mutual TLS, or (None, None) when not configured."""
    if not (cert and key and ca):
        return None, None
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=ca)
    server.load_cert_chain(cert, key)
    server.verify_mode = ssl.CERT_REQUIRED
    client = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca)
    client.load_cert_chain(cert, key)
    client.check_hostname = False  # peers are named by node id, verified by the CA
    return server, client


class Transport:
    def __init__(
        self,
        node_id: str,
        peers: dict[str, tuple[str, int]],
        deliver: Callable[[str, Any], None],
        *,
        server_ssl: ssl.SSLContext | None = None,
        client_ssl: ssl.SSLContext | None = None,
        queue_limit: int = 4096,
    ) -> None:
        self.node_id = node_id
        self.peers = peers
        self.deliver = deliver
        self.server_ssl = server_ssl
        self.client_ssl = client_ssl
        self.queue_limit = queue_limit
        self._queues: dict[str, asyncio.Queue[bytes]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._server: asyncio.Server | None = None
        self._inbound: set[asyncio.StreamWriter] = set()
        self.dropped = 0
        self.bad_frames = 0

    async def start(self, host: str, port: int) -> None:
        self._server = await asyncio.start_server(self._serve, host, port, ssl=self.server_ssl)

    def send(self, dst: str, msg: Any) -> None:
        q = self._queues.get(dst)
        if q is None:
            if dst not in self.peers:
                return
            q = self._queues[dst] = asyncio.Queue(self.queue_limit)
            self._tasks.append(asyncio.create_task(self._sender(dst, q)))
        try:
            q.put_nowait(frame(msg, MAX_FRAME))
        except asyncio.QueueFull:
            self.dropped += 1

    async def _sender(self, dst: str, q: asyncio.Queue[bytes]) -> None:
        backoff = 0.05
        while True:
            host, port = self.peers[dst]
            try:
                _, writer = await asyncio.open_connection(host, port, ssl=self.client_ssl)
            except Exception:  # refused, unreachable, TLS failure: retry later
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
                continue
            backoff = 0.05
            try:
                writer.write(frame(Hello(self.node_id)))
                while True:
                    data = await q.get()
                    chunks = [data]
                    while not q.empty() and len(chunks) < 256:
                        chunks.append(q.get_nowait())
                    writer.write(b"".join(chunks))
                    await writer.drain()
            except Exception as e:  # whatever broke, the link must live on
                log.info("link to %s lost: %r; reconnecting", dst, e)
                await asyncio.sleep(backoff)
            finally:
                writer.close()
                with contextlib.suppress(Exception):
                    await writer.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._inbound.add(writer)
        try:
            await serve_peer_frames(reader, RAFT_MESSAGES, self.deliver, self._bad_frame)
        finally:
            self._inbound.discard(writer)
            writer.close()

    def _bad_frame(self, src: str | None, error: CodecError) -> None:
        self.bad_frames += 1
        log.warning("closing peer connection from %s: %s", src or "?", error)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for t in self._tasks:
            t.cancel()
        for w in list(self._inbound):
            w.close()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t


async def serve_peer_frames(
    reader: asyncio.StreamReader,
    accept: tuple[type, ...],
    deliver: Callable[[str, Any], None],
    on_bad: Callable[[str | None, CodecError], None],
    max_frame: int = MAX_FRAME,
) -> None:
    """Read one inbound peer connection until EOF: a :class:`Hello` naming the sender, then
    frames of the ``accept``ed record types, each handed to ``deliver(src, msg)``. Anything
    else — bytes that do not decode, a missing Hello, a record of another protocol — ends the
    connection through ``on_bad``; the caller closes it. Shared by every peer link (Raft's,
    the federation's sync link) so they refuse bad input the same way."""
    dec = FrameDecoder(max_frame)
    src: str | None = None
    try:
        while data := await reader.read(1 << 16):
            for payload in dec.feed(data):
                msg: Any = decode(payload, max_size=max_frame)
                if src is None:
                    if not isinstance(msg, Hello):
                        raise CodecError("a connection must start with Hello")
                    src = msg.node
                elif isinstance(msg, accept):
                    deliver(src, msg)
                else:
                    raise CodecError(f"unexpected {type(msg).__name__} on this link")
    except CodecError as e:
        on_bad(src, e)
    except (OSError, ConnectionError):
        pass
