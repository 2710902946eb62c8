"""The admin client reads the node's /v1/cluster document into typed fields."""

from __future__ import annotations

import json
import os
from pathlib import Path

from novacron_operator.admin import Address, ClusterInfo, Resolver


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
