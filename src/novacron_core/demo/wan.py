"""A userspace WAN between the demo's region namespaces, for kernels without ``tc netem``.

``python -m novacron_core.demo.wan BLOCK NS0 NS1 ...`` (root) creates a TUN device ``wan`` in
each region's namespace (the demo routes every other region's /24 through it), then forwards
every IP packet read from one region's ``wan`` into the destination region's ``wan`` after that
pair's one-way delay, in order per region pair. The packets are real: the nodes' TCP sees the
round trip, retransmits what is lost and backs off, as over ``netem``.

Control on stdin, one line each: ``delay I K MS`` sets the one-way delay from region I to
region K; ``cut I,K,...`` drops every packet between those regions and the rest (``cut`` alone
heals); ``stats`` prints forwarded/dropped counts. EOF (the demo exited, or was killed with -9)
ends it, and its TUN devices vanish with it. It prints ``ready`` once every device exists.
"""

from __future__ import annotations

import asyncio
import collections
import ctypes
import fcntl
import ipaddress
import os
import signal
import struct
import sys

TUNSETIFF = 0x400454CA
IFF_TUN, IFF_NO_PI = 0x0001, 0x1000
CLONE_NEWNET = 0x40000000
NETNS_DIR = "/run/netns"


def _setns(path: str) -> None:
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    fd = os.open(path, os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns({path}): {os.strerror(err)}")
    finally:
        os.close(fd)


def open_tun_in(ns: str, name: str = "wan") -> int:
    """A TUN device ``name`` created inside namespace ``ns`` (this thread returns to its own
    namespace after); the device lives as long as the returned fd."""
    home_fd = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        _setns(f"{NETNS_DIR}/{ns}")
        try:
            fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
            ifr = struct.pack("16sH22x", name.encode(), IFF_TUN | IFF_NO_PI)
            fcntl.ioctl(fd, TUNSETIFF, ifr)
            return fd
        finally:
            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            if libc.setns(home_fd, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns back home failed")
    finally:
        os.close(home_fd)


class Wan:
    def __init__(self, block: ipaddress.IPv4Network, fds: list[int]) -> None:
        self.base = int(block.network_address)
        self.fds = fds
        n = len(fds)
        self.delay_s = [[0.0] * n for _ in range(n)]
        self.cut: set[int] = set()
        self.queues: dict[tuple[int, int], collections.deque[tuple[float, bytes]]] = {}
        self.forwarded = self.dropped = 0
        self.loop = asyncio.get_running_loop()

    def region_of(self, packet: bytes) -> int | None:
        if len(packet) < 20 or packet[0] >> 4 != 4:
            return None  # not IPv4
        k = (int.from_bytes(packet[16:20], "big") - self.base) >> 8
        return k if 0 <= k < len(self.fds) else None

    def readable(self, i: int) -> None:
        while True:
            try:
                packet = os.read(self.fds[i], 65536)
            except BlockingIOError:
                return
            except OSError:
                return
            k = self.region_of(packet)
            if k is None or k == i or ((i in self.cut) != (k in self.cut)):
                self.dropped += 1
                continue
            q = self.queues.setdefault((i, k), collections.deque())
            due = self.loop.time() + self.delay_s[i][k]
            q.append((due, packet))
            if len(q) == 1:
                self.loop.call_at(due, self.drain, i, k)

    def drain(self, i: int, k: int) -> None:
        q = self.queues[(i, k)]
        now = self.loop.time()
        while q and q[0][0] <= now:
            _, packet = q.popleft()
            if (i in self.cut) != (k in self.cut):  # cut while in flight
                self.dropped += 1
                continue
            try:
                os.write(self.fds[k], packet)
                self.forwarded += 1
            except OSError:
                self.dropped += 1
        if q:
            self.loop.call_at(q[0][0], self.drain, i, k)

    def command(self, line: str) -> str | None:
        words = line.split()
        if not words:
            return None
        if words[0] == "delay" and len(words) == 4:
            self.delay_s[int(words[1])][int(words[2])] = float(words[3]) / 1000.0
        elif words[0] == "cut":
            self.cut = {int(x) for x in words[1].split(",")} if len(words) > 1 else set()
        elif words[0] == "stats":
            return f"forwarded {self.forwarded} dropped {self.dropped}"
        else:
            return f"error: {line.strip()}"
        return "ok"


async def _main(block: str, spaces: list[str]) -> None:
    fds = [open_tun_in(ns) for ns in spaces]
    wan = Wan(ipaddress.IPv4Network(block), fds)
    loop = asyncio.get_running_loop()
    for i, fd in enumerate(fds):
        loop.add_reader(fd, wan.readable, i)
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    print("ready", flush=True)
    while line := await reader.readline():
        reply = wan.command(line.decode())
        if reply is not None:
            print(reply, flush=True)
    for fd in fds:
        loop.remove_reader(fd)
        os.close(fd)


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the demo's; EOF ends us
    asyncio.run(_main(sys.argv[1], sys.argv[2:]))
