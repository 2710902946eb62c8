"""Peer transport: one outbound TCP connection per peer, length-prefixed codec frames.

A connection opens with a :class:`Hello` naming the sender (and where it listens, so a new
member can answer a leader it has no address for yet); every later frame is one of the
record types the node accepts (``accept``: its machine's wire types). A frame that does not
decode (or is of another type) closes that one connection; the node and its other peers
carry on. Outbound queues are bounded and drop the newest message when full: the protocols
retransmit, so loss costs latency, never safety.

The links also report what TCP tells them about a peer — a refused connection, a broken
link, an inbound connection closed by the peer (a killed process closes all of them) — to
``on_unreachable``; the consensus member uses that to replace a crashed leader without
waiting out the election timeout. A peer that connects to us is evidently back: our link to it stops
backing off and reconnects at once.
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

log = logging.getLogger(__name__)
MAX_FRAME = 64 << 20


@record(210)
@dataclass(frozen=True, slots=True)
class Hello:
    node: str
    cluster: str = "novacron"
    peer: str = ""  # the sender's advertised peer address ("host:port"), when it knows it


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
        on_unreachable: Callable[[str], None] | None = None,
        advertise: str = "",
        accept: tuple[type, ...] = (),
    ) -> None:
        self.node_id = node_id
        self.accept = accept  # the record types peers may send (the machine's wire types)
        self.peers = dict(peers)
        # Addresses peers announced in their Hello, used only for peers we have no address
        # for (a joiner answering a leader that is not in its bootstrap list).
        self.announced: dict[str, tuple[str, int]] = {}
        self.deliver = deliver
        self.on_unreachable = on_unreachable
        self.advertise = advertise  # our own peer address, sent in Hello
        self.server_ssl = server_ssl
        self.client_ssl = client_ssl
        self.queue_limit = queue_limit
        self._queues: dict[str, asyncio.Queue[bytes]] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._wake: dict[str, asyncio.Event] = {}
        self._server: asyncio.Server | None = None
        self._inbound: set[asyncio.StreamWriter] = set()
        self.dropped = 0
        self.bad_frames = 0

    async def start(self, host: str, port: int) -> None:
        self._server = await asyncio.start_server(self._serve, host, port, ssl=self.server_ssl)

    def address(self, dst: str) -> tuple[str, int] | None:
        return self.peers.get(dst) or self.announced.get(dst)

    def update_peers(self, peers: dict[str, tuple[str, int]]) -> None:
        """Membership changed: forget removed peers (closing their links) and re-dial peers
        whose address moved; new peers are dialled on the first message to them."""
        before = {dst: self.address(dst) for dst in self._tasks}
        removed = set(self.peers) - set(peers)
        self.peers = dict(peers)
        for dst in list(self.announced):
            if dst in self.peers or dst in removed:
                del self.announced[dst]
        for dst, addr in before.items():
            if self.address(dst) != addr:
                self._drop_link(dst)

    def _drop_link(self, dst: str) -> None:
        task = self._tasks.pop(dst, None)
        if task is not None:
            task.cancel()
        self._queues.pop(dst, None)
        self._wake.pop(dst, None)

    def send(self, dst: str, msg: Any) -> None:
        q = self._queues.get(dst)
        if q is None:
            if self.address(dst) is None:
                return
            q = self._queues[dst] = asyncio.Queue(self.queue_limit)
            self._wake[dst] = asyncio.Event()
            self._tasks[dst] = asyncio.create_task(self._sender(dst, q))
        try:
            q.put_nowait(frame(msg, MAX_FRAME))
        except asyncio.QueueFull:
            self.dropped += 1

    def _unreachable(self, peer: str) -> None:
        if self.on_unreachable is not None:
            self.on_unreachable(peer)

    async def _backoff(self, dst: str, delay: float) -> None:
        """Sleep before reconnecting, cut short when ``dst`` connects to us."""
        wake = self._wake.get(dst)
        if wake is None:
            await asyncio.sleep(delay)
            return
        wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), delay)

    async def _sender(self, dst: str, q: asyncio.Queue[bytes]) -> None:
        backoff = 0.05
        carry: list[bytes] = []  # taken from the queue, not written: first on the next link
        while True:
            addr = self.address(dst)
            if addr is None:  # forgotten meanwhile
                return
            host, port = addr
            try:
                reader, writer = await asyncio.open_connection(host, port, ssl=self.client_ssl)
            except Exception:  # refused, unreachable, TLS failure: retry later
                self._unreachable(dst)
                await self._backoff(dst, backoff)
                backoff = min(backoff * 2, 1.0)
                continue
            backoff = 0.05
            closed = asyncio.Event()
            watcher = asyncio.create_task(_watch_close(reader, closed, q))
            try:
                writer.write(frame(Hello(self.node_id, peer=self.advertise)))
                while True:
                    chunks = carry or [await q.get()]
                    carry = []
                    while not q.empty() and len(chunks) < 256:
                        chunks.append(q.get_nowait())
                    if closed.is_set():
                        # The peer closed this link (it restarted, or died): writing would
                        # only lose these messages in a dead socket, so reconnect first.
                        carry = [c for c in chunks if c]
                        raise ConnectionResetError("closed by the peer")
                    writer.write(b"".join(chunks))
                    await writer.drain()
            except Exception as e:  # whatever broke, the link must live on
                log.info("link to %s lost: %r; reconnecting", dst, e)
                self._unreachable(dst)
                await self._backoff(dst, backoff)
            finally:
                watcher.cancel()
                writer.close()
                with contextlib.suppress(Exception):
                    await writer.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._inbound.add(writer)
        src: str | None = None
        try:
            src = await serve_peer_frames(
                reader, self.accept, self.deliver, self._bad_frame, on_hello=self._hello
            )
        finally:
            self._inbound.discard(writer)
            writer.close()
        if src is not None:
            # The peer closed its link to us: a process that dies (kill -9 included) closes
            # every socket it holds, so this is the earliest sign a leader is gone.
            self._unreachable(src)

    def _hello(self, hello: Hello) -> None:
        src = hello.node
        if hello.peer and src not in self.peers:
            try:
                self.announced[src] = split_host_port(hello.peer)
            except ValueError:
                pass
        wake = self._wake.get(src)
        if wake is not None:
            wake.set()  # it is up: stop backing off our link to it

    def _bad_frame(self, src: str | None, error: CodecError) -> None:
        self.bad_frames += 1
        log.warning("closing peer connection from %s: %s", src or "?", error)

    async def close(self) -> None:
        self.on_unreachable = None  # shutting down: what we close is not news
        if self._server is not None:
            self._server.close()
        for t in self._tasks.values():
            t.cancel()
        for w in list(self._inbound):
            w.close()
        for t in self._tasks.values():
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t


async def _watch_close(
    reader: asyncio.StreamReader, closed: asyncio.Event, q: asyncio.Queue[bytes]
) -> None:
    """Links carry frames one way, so anything but silence from the receiving end — EOF,
    a reset — means it closed. Notice at once (not on the next write, whose messages would
    vanish into the dead socket) and wake the sender with an empty item."""
    with contextlib.suppress(Exception):
        await reader.read(1)
    closed.set()
    with contextlib.suppress(asyncio.QueueFull):
        q.put_nowait(b"")


async def serve_peer_frames(
    reader: asyncio.StreamReader,
    accept: tuple[type, ...],
    deliver: Callable[[str, Any], None],
    on_bad: Callable[[str | None, CodecError], None],
    max_frame: int = MAX_FRAME,
    on_hello: Callable[[Hello], None] | None = None,
) -> str | None:
    """Read one inbound peer connection until EOF: a :class:`Hello` naming the sender, then
    frames of the ``accept``ed record types, each handed to ``deliver(src, msg)``. Anything
    else — bytes that do not decode, a missing Hello, a record of another protocol — ends the
    connection through ``on_bad``; the caller closes it. Shared by every peer link (Raft's,
    the federation's sync link) so they refuse bad input the same way. Returns the sender
    named by the Hello (None when there was none); ``on_hello`` sees the Hello itself."""
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
                    if on_hello is not None:
                        on_hello(msg)
                elif isinstance(msg, accept):
                    deliver(src, msg)
                else:
                    raise CodecError(f"unexpected {type(msg).__name__} on this link")
    except CodecError as e:
        on_bad(src, e)
    except (OSError, ConnectionError):
        pass
    return src


def split_host_port(addr: str) -> tuple[str, int]:
    """``host:port`` (host may be empty: loopback) -> (host, port); ValueError otherwise."""
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"not host:port: {addr!r}")
    return host or "127.0.0.1", int(port)
