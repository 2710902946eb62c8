"""Two network namespaces joined by a veth pair: the underlay tests and benchmarks bring
tunnels up across (root only).

Names are ``ncl<pid>a``/``ncl<pid>b``; a lab whose process is gone (killed before it could
clean up) is swept by the next lab. The underlay is 198.19.254.0/30 inside the namespaces
(RFC 2544 benchmarking space; nothing outside the namespaces sees it).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from novacron_core.tunnels.manager import TunnelManager

UNDERLAY = ("198.19.254.1", "198.19.254.2")
DEV = "u0"
_NAME = re.compile(r"^ncl(\d+)[ab]$")


def _ip(*args: str, check: bool = True) -> str:
    p = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=False)
    if check and p.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {p.stderr.strip()}")
    return p.stdout


def why_not() -> str:
    """'' if a lab can be built here, else the reason."""
    if os.geteuid() != 0:
        return "needs root (network namespaces, veth pairs, tunnel interfaces)"
    if shutil.which("ip") is None:
        return "needs the `ip` command (iproute2)"
    return ""


def sweep() -> list[str]:
    """Remove the namespaces of labs whose process is gone."""
    gone = []
    for line in _ip("netns", "list", check=False).splitlines():
        name = line.split()[0] if line.strip() else ""
        m = _NAME.match(name)
        if m and not Path(f"/proc/{m.group(1)}").exists():
            _ip("netns", "del", name, check=False)
            gone.append(name)
    return gone


class NetLab:
    def __init__(self, tag: str = "") -> None:
        base = f"ncl{os.getpid()}"
        self.ns = (f"{base}a", f"{base}b")
        self.state = Path(tempfile.mkdtemp(prefix=f"novacron-lab{tag}-"))
        self.managers: list[TunnelManager] = []

    def __enter__(self) -> NetLab:
        sweep()
        try:
            for ns in self.ns:
                _ip("netns", "del", ns, check=False)
                _ip("netns", "add", ns)
            _ip("link", "add", "ncltmpa", "netns", self.ns[0], "type", "veth", "peer", "name",
                "ncltmpb", "netns", self.ns[1])  # fmt: skip
            for ns, tmp, addr in zip(self.ns, ("ncltmpa", "ncltmpb"), UNDERLAY, strict=True):
                _ip("-n", ns, "link", "set", tmp, "name", DEV)
                _ip("-n", ns, "addr", "add", f"{addr}/30", "dev", DEV)
                _ip("-n", ns, "link", "set", DEV, "up")
                _ip("-n", ns, "link", "set", "lo", "up")
        except BaseException:
            self.close()
            raise
        return self

    def manager(self, side: int, **kw: object) -> TunnelManager:
        m = TunnelManager(self.state / str(side), netns=self.ns[side], **kw)  # type: ignore[arg-type]
        self.managers.append(m)
        return m

    def exec_argv(self, side: int, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.ns[side], *argv]

    def close(self) -> None:
        for m in self.managers:
            try:
                m.remove_all()
            except Exception:  # the namespace going away removes the links anyway
                pass
        for ns in self.ns:
            _ip("netns", "del", ns, check=False)
        shutil.rmtree(self.state, ignore_errors=True)

    def __exit__(self, *exc: object) -> None:
        self.close()
