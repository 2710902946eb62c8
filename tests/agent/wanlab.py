"""Region namespaces joined by the demo's userspace WAN (``novacron_core.demo.wan``: real
packets delayed per region pair, for kernels without netem), for agent tests (root only).

Region i is 198.19.240.0/20's i-th /24 (only inside our namespaces: nothing in the root
namespace changes); its agent listens on ``.11`` of it. A single link is cut with blackhole
routes at both ends (the WAN's own ``cut`` splits the regions into two sides instead).
"""

from __future__ import annotations

import ctypes
import http.client
import ipaddress
import json
import os
import re
import socket
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

BLOCK = ipaddress.IPv4Network("198.19.240.0/20")
CLONE_NEWNET = 0x40000000
_NAME = re.compile(r"^ncw(\d+)r\d$")


def _ip(*args: str, check: bool = True) -> None:
    p = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=False)
    if check and p.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {p.stderr.strip()}")


def sweep() -> None:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False)
    for line in out.stdout.splitlines():
        name = line.split()[0] if line.strip() else ""
        m = _NAME.match(name)
        if m and not Path(f"/proc/{m.group(1)}").exists():
            _ip("netns", "del", name, check=False)


class WanLab:
    def __init__(self, regions: Sequence[str], rtt_ms: Mapping[tuple[str, str], float]) -> None:
        self.regions = list(regions)
        self.rtt_ms = dict(rtt_ms)
        self.ns = [f"ncw{os.getpid()}r{i}" for i in range(len(regions))]
        self.wan: subprocess.Popen[str] | None = None

    def subnet(self, i: int) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network((int(BLOCK.network_address) + 256 * i, 24))

    def addr(self, region: str) -> str:
        return str(self.subnet(self.regions.index(region))[11])

    def ns_of(self, region: str) -> str:
        return self.ns[self.regions.index(region)]

    def exec_argv(self, region: str, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.ns_of(region), *argv]

    def __enter__(self) -> WanLab:
        sweep()
        try:
            for i, ns in enumerate(self.ns):
                _ip("netns", "add", ns)
                _ip("-n", ns, "link", "set", "lo", "up")
                _ip("-n", ns, "addr", "add", f"{self.subnet(i)[11]}/32", "dev", "lo")
            self.wan = subprocess.Popen(
                [sys.executable, "-m", "novacron_core.demo.wan", str(BLOCK), *self.ns],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                text=True, start_new_session=True,
            )  # fmt: skip
            self._say(None, "ready")
            for i, ns in enumerate(self.ns):
                _ip("-n", ns, "link", "set", "wan", "up")
                for k in range(len(self.ns)):
                    if k != i:
                        _ip("-n", ns, "route", "add", str(self.subnet(k)), "dev", "wan")
                        a, b = self.regions[i], self.regions[k]
                        rtt = self.rtt_ms.get((a, b), self.rtt_ms.get((b, a), 0.0))
                        self._say(f"delay {i} {k} {rtt / 2:g}", "ok")
        except BaseException:
            self.close()
            raise
        return self

    def _say(self, line: str | None, expect: str) -> str:
        assert self.wan is not None
        assert self.wan.stdin is not None
        assert self.wan.stdout is not None
        if line is not None:
            self.wan.stdin.write(line + "\n")
            self.wan.stdin.flush()
        reply = self.wan.stdout.readline().strip()
        if not reply.startswith(expect):
            raise RuntimeError(f"the WAN answered {reply!r} to {line!r}")
        return reply

    def cut_link(self, a: str, b: str, cut: bool = True) -> None:
        verb = "add" if cut else "del"
        _ip("-n", self.ns_of(a), "route", verb, "blackhole", f"{self.addr(b)}/32")
        _ip("-n", self.ns_of(b), "route", verb, "blackhole", f"{self.addr(a)}/32")

    def fetch(self, port: int) -> Any:
        """A ``fetch(region, path)`` for AgentFleet: HTTP over a socket made inside the
        region's namespace (a socket stays in the namespace it was created in)."""

        def get(region: str, path: str) -> dict[str, Any]:
            sock = socket_in(self.ns_of(region))
            conn = http.client.HTTPConnection(self.addr(region), port, timeout=3)
            sock.settimeout(3)
            sock.connect((self.addr(region), port))
            conn.sock = sock
            try:
                conn.request("GET", path)
                body: dict[str, Any] = json.loads(conn.getresponse().read())
                return body
            finally:
                conn.close()

        return get

    def close(self) -> None:
        if self.wan is not None:
            for pipe in (self.wan.stdin, self.wan.stdout, self.wan.stderr):
                if pipe is not None:
                    pipe.close()
            try:
                self.wan.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.wan.kill()
                self.wan.wait()
            self.wan = None
        for ns in self.ns:
            _ip("netns", "del", ns, check=False)

    def __exit__(self, *exc: object) -> None:
        self.close()


def socket_in(ns: str) -> socket.socket:
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{ns}", os.O_RDONLY)
    try:
        if libc.setns(target, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns {ns}")
        try:
            return socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        finally:
            if libc.setns(home, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns back")
    finally:
        os.close(home)
        os.close(target)
