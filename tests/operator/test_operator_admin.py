"""The admin client reads the node's /v1/cluster document into typed fields."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from novacron_operator.admin import Address, ClusterInfo, NodeClients, Resolver


def test_cluster_document_parses_leader_term_commit_and_members() -> None:
    doc = {
        "id": "n2",
        "role": "follower",
        "term": 7,
        "leader": "n1",
        "commit": 42,
        "applied": 40,
        "last_index": 43,
        "voters": ["n3", "n1", "n2"],
        "learners": ["n4"],
    }
    info = ClusterInfo.from_json(doc)
    assert (info.leader, info.term, info.commit_index) == ("n1", 7, 42)
    assert info.voters == ("n1", "n2", "n3")
    assert info.learners == ("n4",)


def test_resolver_uses_pod_dns_names_or_the_override_map_reread_on_change(
    tmp_path: Path,
) -> None:
    dns = Resolver().address("prod", "us-east-peers", "us-east-1")
    assert dns == Address(
        "us-east-1.us-east-peers.prod.svc:7000", "us-east-1.us-east-peers.prod.svc:8080"
    )
    path = tmp_path / "map.json"
    r = Resolver(str(path))
    assert r.address("prod", "us-east-peers", "us-east-1") is None  # no file yet
    path.write_text(json.dumps({"us-east-1": {"peer": "127.0.0.1:1", "http": "127.0.0.1:2"}}))
    assert r.address("prod", "us-east-peers", "us-east-1") == Address("127.0.0.1:1", "127.0.0.1:2")
    path.write_text(json.dumps({"us-east-1": {"peer": "127.0.0.1:3", "http": "127.0.0.1:4"}}))
    os.utime(path, (1, 1))  # a different mtime, however coarse the file system's clock
    assert r.address("prod", "us-east-peers", "us-east-1") == Address("127.0.0.1:3", "127.0.0.1:4")


async def test_member_changes_carry_addresses_and_probe_skips_silent_nodes() -> None:
    from aiohttp import web

    seen: list[dict[str, Any]] = []
    doc = {
        "id": "r-0",
        "role": "leader",
        "term": 2,
        "leader": "r-0",
        "commit": 5,
        "applied": 5,
        "voters": ["r-0"],
        "learners": [],
        "peers": {"r-0": {"peer": "h:1", "http": "h:2"}},
    }

    async def cluster(_: web.Request) -> web.Response:
        return web.json_response(doc)

    async def members(request: web.Request) -> web.Response:
        seen.append(await request.json())
        return web.json_response({**doc, "learners": ["r-1"]})

    async def transfer(request: web.Request) -> web.Response:
        seen.append(await request.json())
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_get("/v1/cluster", cluster)
    app.router.add_post("/v1/cluster/members", members)
    app.router.add_post("/v1/cluster/transfer", transfer)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    class Map(Resolver):
        def address(self, namespace: str, service: str, pod: str) -> Address | None:
            return {"r-0": Address("127.0.0.1:1", f"127.0.0.1:{port}")}.get(pod)

    clients = NodeClients(Map(), timeout=1.0)
    try:
        found = await clients.probe("ns", "r-peers", ["r-0", "r-1"])
        assert list(found) == ["r-0"]
        assert found["r-0"].peers["r-0"]["http"] == "h:2"
        admin = clients.admin(Address("", f"127.0.0.1:{port}"))
        after = await admin.add_learner("r-1", Address("10.0.0.2:7000", "10.0.0.2:8080"))
        assert after.learners == ("r-1",)
        await admin.promote("r-1")
        await admin.transfer_leader("r-1")
        assert seen == [
            {
                "action": "add_learner",
                "node": "r-1",
                "peer": "10.0.0.2:7000",
                "http": "10.0.0.2:8080",
            },
            {"action": "promote", "node": "r-1"},
            {"target": "r-1"},
        ]
    finally:
        await clients.close()
        await runner.cleanup()
