"""Real ``novacron node`` processes on 127.0.0.1 for integration tests."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from benchmarks.common import free_ports


def stop(proc: subprocess.Popen[Any], grace: float = 10) -> None:
    """SIGTERM, then SIGKILL after ``grace`` seconds: a server a test started never outlives it."""
    proc.terminate()
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@dataclass
class ProcCluster:
    root: Path
    size: int = 3
    extra: list[str] = field(default_factory=list)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    peer_ports: dict[str, int] = field(default_factory=dict)
    http_ports: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        ports = free_ports(2 * self.size)
        self.names = [f"n{i + 1}" for i in range(self.size)]
        for i, n in enumerate(self.names):
            self.peer_ports[n] = ports[2 * i]
            self.http_ports[n] = ports[2 * i + 1]
        self.peers = ",".join(
            f"{n}=127.0.0.1:{self.peer_ports[n]}/127.0.0.1:{self.http_ports[n]}" for n in self.names
        )

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.http_ports[name]}"

    def start(self, name: str) -> None:
        cmd = [
            sys.executable,
            "-m",
            "novacron_core.runtime.node_cli",
            "--node-id",
            name,
            "--data-dir",
            str(self.root / name),
            "--peers",
            self.peers,
            *self.extra,
        ]
        log = open(self.root / f"{name}.log", "ab")  # noqa: SIM115 (closed with the process)
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.procs[name] = subprocess.Popen(cmd, stdout=log, stderr=log, env=env)
        log.close()

    def start_all(self) -> None:
        for n in self.names:
            self.start(n)

    def kill9(self, name: str) -> None:
        p = self.procs.pop(name)
        p.send_signal(signal.SIGKILL)
        p.wait()

    def stop_all(self) -> None:
        for p in self.procs.values():
            with contextlib.suppress(ProcessLookupError):
                p.send_signal(signal.SIGTERM)
        for p in self.procs.values():
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.procs.clear()

    async def leader(self, http: aiohttp.ClientSession, limit_s: float = 20.0) -> str:
        """The leader as reported by a live node (waits until one is known and ready)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit_s
        seen: dict[str, object] = {}
        while loop.time() < deadline:
            for n in list(self.procs):
                try:
                    async with http.get(self.url(n) + "/v1/cluster") as r:
                        st = await r.json()
                    seen[n] = st
                    lead = st.get("leader")
                    if lead in self.procs:
                        return str(lead)
                except (aiohttp.ClientError, TimeoutError) as e:
                    seen[n] = repr(e)
            await asyncio.sleep(0.05)
        raise AssertionError(f"no leader within {limit_s}s: {seen}; logs in {self.root}")

    async def follows(
        self, http: aiohttp.ClientSession, node: str, lead: str, limit_s: float = 20.0
    ) -> None:
        """Wait until ``node`` itself names ``lead`` as its leader: a follower that has not
        heard from the new leader yet answers a proxied write 503 (honestly, not applied)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit_s
        st: object = None
        while loop.time() < deadline:
            try:
                async with http.get(self.url(node) + "/v1/cluster") as r:
                    st = await r.json()
                if isinstance(st, dict) and st.get("leader") == lead:
                    return
            except (aiohttp.ClientError, TimeoutError) as e:
                st = repr(e)
            await asyncio.sleep(0.05)
        raise AssertionError(f"{node} does not follow {lead} within {limit_s}s: {st}")

    async def all_ready(self, http: aiohttp.ClientSession, limit_s: float = 30.0) -> None:
        """Wait until every running node answers /readyz with 200 (all ports are open)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit_s
        pending = set(self.procs)
        while pending and loop.time() < deadline:
            for n in sorted(pending):
                try:
                    async with http.get(self.url(n) + "/readyz") as r:
                        if r.status == 200:
                            pending.discard(n)
                except (aiohttp.ClientError, TimeoutError):
                    pass
            await asyncio.sleep(0.05)
        assert not pending, f"not ready after {limit_s}s: {sorted(pending)}; logs in {self.root}"


async def call(
    http: aiohttp.ClientSession, method: str, url: str, limit_s: float = 15.0, **kw: object
) -> tuple[int, bytes]:
    """One HTTP call, retried while the answer says "certainly not applied, try again"
    (503 no leader, 429 busy) — e.g. during an election a loaded machine set off."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit_s
    while True:
        try:
            async with http.request(method, url, **kw) as r:  # type: ignore[arg-type]
                status, body = r.status, await r.read()
        except aiohttp.ClientConnectionError:
            status, body = 503, b""
        if status not in (503, 429) or loop.time() > deadline:
            return status, body
        await asyncio.sleep(0.1)
