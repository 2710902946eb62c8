"""A real one-member node (Raft, fsync'd storage, HTTP on a port) run in the test's own event
loop, for tests that also reach inside it: store bytes no API would, put bytes into its
federation replica."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from novacron_core.codec import encode
from novacron_core.consensus.interface import LEADER, OK, Propose
from novacron_core.consensus.kv import PUT, KVCommand
from novacron_core.runtime.node import NodeServer
from novacron_core.runtime.settings import NodeSettings
from tests.runtime.procs import free_ports


@contextlib.asynccontextmanager
async def running_node(root: Path, region: str = "r1", **settings: Any) -> AsyncIterator[str]:
    """Yields the node's base URL once it leads (a group of one elects itself)."""
    node, url = make_node(root, region, **settings)
    async with serving(node):
        yield url


def make_node(
    root: Path, region: str = "r1", federated: bool = False, **settings: Any
) -> tuple[NodeServer, str]:
    """``federated``: with a federation file naming this node's region alone (its replica
    runs, the federation API answers)."""
    peer, api = free_ports(2)
    if federated:
        root.mkdir(parents=True, exist_ok=True)
        doc = {
            "federation": "solo",
            "members": [{"name": region, "region": region, "endpoints": [f"127.0.0.1:{peer}"]}],
        }
        (root / "federation.json").write_text(json.dumps(doc))
        settings["federation_file"] = str(root / "federation.json")
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
            st = node.status()  # leading, and its term's first entry committed
            if st.role == LEADER and st.commit >= st.last_index > 0:
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
