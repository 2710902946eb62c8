"""The userspace WAN's forwarding, over datagram socket pairs instead of TUN devices."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time

from novacron_core.demo.wan import Wan

BLOCK = ipaddress.IPv4Network("198.18.16.0/20")


def _packet(dst: str, tag: int) -> bytes:
    header = bytes([0x45]) + bytes(11) + bytes(4) + ipaddress.IPv4Address(dst).packed
    return header + tag.to_bytes(4, "big")


class Harness:
    """Region i's TUN device is one end of a socket pair; the test holds the other."""

    def __init__(self, regions: int) -> None:
        self.pairs = [socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM) for _ in range(regions)]
        for wan_end, test_end in self.pairs:
            wan_end.setblocking(False)
            test_end.setblocking(False)
        self.wan = Wan(BLOCK, [w.fileno() for w, _ in self.pairs])
        loop = asyncio.get_running_loop()
        for i, (w, _) in enumerate(self.pairs):
            loop.add_reader(w.fileno(), self.wan.readable, i)

    def send(self, i: int, packet: bytes) -> None:
        self.pairs[i][1].send(packet)

    def received(self, k: int) -> list[bytes]:
        out = []
        while True:
            try:
                out.append(self.pairs[k][1].recv(65536))
            except BlockingIOError:
                return out

    def close(self) -> None:
        loop = asyncio.get_running_loop()
        for w, t in self.pairs:
            loop.remove_reader(w.fileno())
            w.close()
            t.close()


async def test_packets_arrive_after_the_pairs_delay_in_order() -> None:
    h = Harness(3)
    try:
        assert h.wan.command("delay 0 2 50") == "ok"
        t0 = time.monotonic()
        for tag in range(20):
            h.send(0, _packet("198.18.18.11", tag))
        h.send(0, _packet("198.18.17.12", 99))  # no delay set for 0 -> 1
        await asyncio.sleep(0.02)
        assert [int.from_bytes(p[-4:], "big") for p in h.received(1)] == [99]
        assert h.received(2) == []
        await asyncio.sleep(0.015)  # 35 ms after sending: still in flight
        assert h.received(2) == []
        await asyncio.sleep(0.1)
        got = h.received(2)
        assert time.monotonic() - t0 >= 0.05
        assert [int.from_bytes(p[-4:], "big") for p in got] == list(range(20))
    finally:
        h.close()


async def test_a_cut_drops_both_ways_and_heals() -> None:
    h = Harness(3)
    try:
        assert h.wan.command("cut 2") == "ok"
        h.send(0, _packet("198.18.18.11", 1))  # into the cut region
        h.send(2, _packet("198.18.16.11", 2))  # out of it
        h.send(0, _packet("198.18.17.11", 3))  # between the others: passes
        await asyncio.sleep(0.02)
        assert h.received(2) == []
        assert h.received(0) == []
        assert len(h.received(1)) == 1
        assert h.wan.command("cut") == "ok"
        h.send(0, _packet("198.18.18.11", 4))
        await asyncio.sleep(0.02)
        assert len(h.received(2)) == 1
        assert h.wan.command("stats") == "forwarded 2 dropped 2"
    finally:
        h.close()


async def test_what_is_not_ours_is_dropped() -> None:
    h = Harness(2)
    try:
        h.send(0, _packet("10.0.0.1", 1))  # outside the block
        h.send(0, _packet("198.18.16.11", 2))  # back into its own region
        h.send(0, b"\x60" + bytes(39))  # IPv6
        await asyncio.sleep(0.02)
        assert h.received(0) == h.received(1) == []
        assert h.wan.command("stats") == "forwarded 0 dropped 3"
        assert h.wan.command("bogus").startswith("error")
    finally:
        h.close()
