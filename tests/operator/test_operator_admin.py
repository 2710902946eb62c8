"""The admin client reads the node's /v1/cluster document into typed fields."""

from __future__ import annotations

from novacron_operator.admin import ClusterInfo


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
    assert not info.caught_up(42)
    assert info.caught_up(40)
