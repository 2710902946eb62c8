"""A real one-member node (Raft, fsync'd storage, HTTP on a port) run in the test's own event
loop, for tests that also reach inside it: store bytes no API would, run a federation
sidecar beside it."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from novacron_core.codec import encode
from novacron_core.consensus.kv import PUT, KVCommand
from novacron_core.consensus.raft import OK, Propose
from novacron_core.runtime.node import NodeServer
from novacron_core.runtime.settings import NodeSettings
from tests.runtime.procs import free_ports


@contextlib.asynccontextmanager
async def running_node(root: Path, region: str = "r1", **settings: Any) -> AsyncIterator[str]:
    """Yields the node's base URL once it leads (a group of one elects itself)."""
    node, url = make_node(root, region, **settings)
    async with serving(node):
        yield url


def make_node(root: Path, region: str = "r1", **settings: Any) -> tuple[NodeServer, str]:
    peer, api = free_ports(2)
    s = NodeSettings(
        node_id="n1",
        data_dir=root / "n1",
        region=region,
        peers=f"n1=127.0.0.1:{peer}/127.0.0.1:{api}",
        **settings,
    )
    return NodeServer(s), f"http://127.0.0.1:{api}"


@contextlib.asynccontextmanager
async def serving(node: NodeServer) -> AsyncIterator[NodeServer]:
    task = asyncio.create_task(node.run())
    try:
        for _ in range(200):
            if node.is_leader() and node.raft.commit >= node.raft.term_start > 0:
                break
            assert not task.done(), task
            await asyncio.sleep(0.02)
        else:
            raise AssertionError("a group of one did not elect itself within 4 s")
        yield node
    finally:
        node.stopping.set()
        await asyncio.wait_for(task, 10)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):  # run() installed them on this loop
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(sig)


async def store_raw(node: NodeServer, key: str, value: bytes) -> None:
    """Commit ``key = value`` through the group, past every API check (as an older node, a
    bug or a restored backup could have)."""
    reply = await node.submit(Propose(encode(KVCommand(PUT, key, value))))
    assert reply.status == OK, reply
