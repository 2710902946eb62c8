"""Peer transport: one outbound TCP (or mutual-TLS) link per peer address, length-prefixed
codec frames; it carries every message of the node's machine (its consensus group's and its
federation replica's alike).

A connection opens with a :class:`Hello` naming the sender (its group member id) and where
it listens (its peer address: how other regions' replicas name it, and how a new member can
answer a leader it has no address for yet); every later frame is one of the record types the
node accepts (``accept``: its machine's wire types). A frame that does not decode (or is of
another type) closes that one connection; the node and its other peers carry on. Outbound
queues are bounded and drop the newest message when full (counted in ``dropped``): the
protocols retransmit, so loss costs latency, never safety.

The links also report what TCP tells them about a peer — a refused connection, a broken
link, an inbound connection closed by the peer (a killed process closes all of them) — to
``on_unreachable``; the consensus member uses that to replace a crashed leader without
waiting out the election timeout. A peer that connects to us is evidently back: our link to
it stops backing off (from 50 ms doubling to 1 s) and reconnects at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from novacron_core.codec import CodecError, FrameDecoder, decode, frame, record
from novacron_core.runtime.aio import wait_set

log = logging.getLogger(__name__)
MAX_FRAME = 64 << 20
Addr = tuple[str, int]


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
        deliver: Callable[[Hello, Any], None],
        *,
        accept: tuple[type, ...],
        server_ssl: ssl.SSLContext | None = None,
        client_ssl: ssl.SSLContext | None = None,
        queue_limit: int = 4096,
        on_unreachable: Callable[[str | None, Addr | None], None] | None = None,
        on_hello: Callable[[Hello], None] | None = None,
        advertise: str = "",
    ) -> None:
        self.node_id = node_id
        self.deliver = deliver
        self.accept = accept  # the record types peers may send (the machine's wire types)
        self.on_unreachable = on_unreachable  # (node id from a Hello, or address we dialled)
        self.on_hello = on_hello
        self.advertise = advertise  # our own peer address, sent in Hello
        self.server_ssl = server_ssl
        self.client_ssl = client_ssl
        self.queue_limit = queue_limit
        self._queues: dict[Addr, asyncio.Queue[bytes]] = {}
        self._tasks: dict[Addr, asyncio.Task[None]] = {}
        self._wake: dict[Addr, asyncio.Event] = {}
        self._server: asyncio.Server | None = None
        self._inbound: set[asyncio.StreamWriter] = set()
        self.dropped = 0  # messages dropped because a link's queue was full
        self.bad_frames = 0

    async def start(self, host: str, port: int) -> None:
        self._server = await asyncio.start_server(self._serve, host, port, ssl=self.server_ssl)

    def send(self, addr: Addr, msg: Any) -> None:
        """Queue ``msg`` for the peer at ``addr`` (its link is dialled on first use)."""
        q = self._queues.get(addr)
        if q is None:
            q = self._queues[addr] = asyncio.Queue(self.queue_limit)
            self._wake[addr] = asyncio.Event()
            self._tasks[addr] = asyncio.create_task(self._sender(addr, q))
        try:
            q.put_nowait(frame(msg, MAX_FRAME))
        except asyncio.QueueFull:
            self.dropped += 1

    def keep_only(self, addrs: Iterable[Addr]) -> None:
        """Close the links to every address not in ``addrs`` (members removed, regions that
        left the federation); a later send dials again."""
        keep = set(addrs)
        for addr in [a for a in self._tasks if a not in keep]:
            self._tasks.pop(addr).cancel()
            self._queues.pop(addr, None)
            self._wake.pop(addr, None)

    @property
    def links(self) -> list[Addr]:
        return sorted(self._tasks)

    def _unreachable(self, node: str | None, addr: Addr | None) -> None:
        if self.on_unreachable is not None:
            self.on_unreachable(node, addr)

    async def _backoff(self, addr: Addr, delay: float) -> None:
        """Sleep before reconnecting, cut short when the peer at ``addr`` connects to us."""
        wake = self._wake.get(addr)
        if wake is None:
            await asyncio.sleep(delay)
            return
        wake.clear()
        await wait_set(wake, delay)

    async def _sender(self, addr: Addr, q: asyncio.Queue[bytes]) -> None:
        backoff = 0.05
        carry: list[bytes] = []  # taken from the queue, not written: first on the next link
        host, port = addr
        while True:
            try:
                reader, writer = await asyncio.open_connection(host, port, ssl=self.client_ssl)
            except Exception:  # refused, unreachable, TLS failure: retry later
                self._unreachable(None, addr)
                await self._backoff(addr, backoff)
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
                log.info("link to %s:%d lost: %r; reconnecting", host, port, e)
                self._unreachable(None, addr)
                await self._backoff(addr, backoff)
            finally:
                watcher.cancel()
                writer.close()
                with contextlib.suppress(Exception):
                    await writer.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._inbound.add(writer)
        hello: Hello | None = None

        def on_hello(h: Hello) -> None:
            nonlocal hello
            hello = h
            self._hello(h)

        try:
            await serve_peer_frames(
                reader, self.accept, self.deliver, self._bad_frame, on_hello=on_hello
            )
        finally:
            self._inbound.discard(writer)
            writer.close()
        if hello is not None:
            # The peer closed its link to us: a process that dies (kill -9 included) closes
            # every socket it holds, so this is the earliest sign a leader is gone.
            self._unreachable(hello.node, _address(hello.peer))

    def _hello(self, hello: Hello) -> None:
        addr = _address(hello.peer)
        if addr is not None:
            wake = self._wake.get(addr)
            if wake is not None:
                wake.set()  # it is up: stop backing off our link to it
        if self.on_hello is not None:
            self.on_hello(hello)

    def _bad_frame(self, hello: Hello | None, error: CodecError) -> None:
        self.bad_frames += 1
        log.warning("closing peer connection from %s: %s", hello.node if hello else "?", error)

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


def _address(peer: str) -> Addr | None:
    try:
        return split_host_port(peer) if peer else None
    except ValueError:
        return None


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
    deliver: Callable[[Hello, Any], None],
    on_bad: Callable[[Hello | None, CodecError], None],
    max_frame: int = MAX_FRAME,
    on_hello: Callable[[Hello], None] | None = None,
) -> Hello | None:
    """Read one inbound peer connection until EOF: a :class:`Hello` naming the sender, then
    frames of the ``accept``ed record types, each handed to ``deliver(hello, msg)``.
    Anything else — bytes that do not decode, a missing Hello, a record of another type —
    ends the connection through ``on_bad``; the caller closes it. Returns the Hello (None
    when there was none)."""
    dec = FrameDecoder(max_frame)
    hello: Hello | None = None
    try:
        while data := await reader.read(1 << 16):
            for payload in dec.feed(data):
                msg: Any = decode(payload, max_size=max_frame)
                if hello is None:
                    if not isinstance(msg, Hello):
                        raise CodecError("a connection must start with Hello")
                    hello = msg
                    if on_hello is not None:
                        on_hello(msg)
                elif isinstance(msg, accept):
                    deliver(hello, msg)
                else:
                    raise CodecError(f"unexpected {type(msg).__name__} on this link")
    except CodecError as e:
        on_bad(hello, e)
    except (OSError, ConnectionError):
        pass
    return hello


def split_host_port(addr: str) -> Addr:
    """``host:port`` (host may be empty: loopback) -> (host, port); ValueError otherwise."""
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"not host:port: {addr!r}")
    return host or "127.0.0.1", int(port)
