"""``NodeServer.on_apply``: a subscriber in the node's process (the federation sidecar)
sees every applied entry in log order, without polling."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from pathlib import Path

import aiohttp

from novacron_core.consensus.kv import PUT
from novacron_core.consensus.raft.messages import NOOP
from novacron_core.runtime.node import Applied, NodeServer
from novacron_core.runtime.settings import NodeSettings
from tests.runtime.procs import call, free_ports


async def test_subscribers_see_applied_commands_in_order_until_they_unsubscribe(
    tmp_path: Path,
) -> None:
    peer, api = free_ports(2)
    settings = NodeSettings(
        node_id="n1",
        data_dir=tmp_path,
        peers=f"n1=127.0.0.1:{peer}/127.0.0.1:{api}",
        fsync=False,
    )
    node = NodeServer(settings)
    seen: list[Applied] = []
    unsubscribe = node.on_apply(seen.append)
    node.on_apply(lambda _: 1 / 0)  # a failing subscriber is logged, not fatal
    task = asyncio.create_task(node.run())
    url = f"http://127.0.0.1:{api}"
    try:
        async with aiohttp.ClientSession() as http:
            for i in range(3):
                status, _ = await call(http, "PUT", f"{url}/v1/kv/k{i}", data=f"v{i}".encode())
                assert status == 200
            commands = [cmd for a in seen for _, cmd in a.commands()]
            assert [(c.op, c.key, c.value) for c in commands] == [
                (PUT, f"k{i}", f"v{i}".encode()) for i in range(3)
            ]
            entries = [e for a in seen for e in a.entries]
            assert entries[0].kind == NOOP  # the leader's own entry comes first
            assert [e.index for e in entries] == list(range(1, len(entries) + 1))
            assert seen[-1].index == node.status().applied
            assert all(a.index == a.entries[-1].index for a in seen)

            unsubscribe()
            before = len(seen)
            status, _ = await call(http, "PUT", f"{url}/v1/kv/later", data=b"x")
            assert status == 200
            assert len(seen) == before
    finally:
        node.stopping.set()
        await asyncio.wait_for(task, 10)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):  # run() installed them on this loop
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(sig)
