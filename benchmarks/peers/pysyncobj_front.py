"""A PySyncObj member with a thin HTTP front: ``PUT /kv/{key}`` -> ReplDict.set.

Run: ``python -m benchmarks.peers.pysyncobj_front SELF_RAFT SELF_HTTP JOURNAL PEER_RAFT...``.
PySyncObj forwards commands from followers to the leader itself. Its journal is an mmap'd
file that it never msyncs per command: it has no fsync-per-commit mode to turn on.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from aiohttp import web
from pysyncobj import SyncObj, SyncObjConf
from pysyncobj.batteries import ReplDict


def main() -> None:
    self_raft, self_http, journal, *peers = sys.argv[1:]
    store = ReplDict()
    conf = SyncObjConf(journalFile=journal, dynamicMembershipChange=False)
    obj = SyncObj(self_raft, peers, conf=conf, consumers=[store])

    async def put(request: web.Request) -> web.Response:
        body = await request.read()
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()

        def done(result: Any, error: Any) -> None:
            loop.call_soon_threadsafe(lambda: fut.done() or fut.set_result(error))

        store.set(request.match_info["key"], body, callback=done)
        error = await asyncio.wait_for(fut, 5)
        if error != 0:
            return web.json_response({"error": str(error)}, status=503)
        return web.json_response({"ok": True})

    async def status(request: web.Request) -> web.Response:
        leader = obj._getLeader()
        return web.json_response(
            {"leader": str(leader) if leader else None, "ready": obj.isReady()}
        )

    app = web.Application()
    app.router.add_put("/kv/{key}", put)
    app.router.add_get("/status", status)
    host, port = self_http.rsplit(":", 1)
    try:
        web.run_app(app, host=host, port=int(port), print=None, access_log=None)
    finally:
        obj.destroy()


if __name__ == "__main__":
    main()
