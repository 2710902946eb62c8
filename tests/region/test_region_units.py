"""The region machine's parts one at a time: the publisher's rules, the composite's one-step
publish, the federation file's model and plan, and a replica reconfigured at run time."""

from __future__ import annotations

import json
from typing import Any

import pytest

from novacron_core.codec import decode, encode
from novacron_core.consensus.interface import (
    BARRIER,
    COMMAND,
    LEADER,
    OK,
    GroupTuning,
    Propose,
    Reply,
    SoftState,
)
from novacron_core.consensus.kv import CAS, KVCommand, KVResult
from novacron_core.consensus.registry import protocol
from novacron_core.federation import vmflow
from novacron_core.federation.config import (
    FederationFileError,
    FederationPlan,
    parse,
    plan,
)
from novacron_core.region.machine import REPLICA, RegionDurable, RegionNode, RegionSpec
from novacron_core.region.publisher import Publisher
from novacron_core.sync.engine import SyncConfig, SyncNode
from novacron_core.sync.messages import Push
from novacron_core.sync.persist import MemoryDurable
from novacron_core.sync.store import Store

RAFT = protocol("raft")


class E:
    """A committed entry as a member reports it."""

    def __init__(self, index: int, term: int, kind: int, data: bytes = b"") -> None:
        self.index, self.term, self.kind, self.data = index, term, kind, data


def _record(vm: str, version: int, region: str = "r1") -> bytes:
    spec = {"cpus": 1, "memory_mib": 512, "image": "alpine"}
    rec = {"id": vm, "name": vm, "home_region": region, "spec": spec, "version": version}
    return json.dumps(rec).encode()


def _put(index: int, term: int, key: str) -> E:
    return E(index, term, COMMAND, encode(KVCommand(CAS, key, b"x", None)))


def test_only_an_established_leader_publishes_and_stamps_with_the_log_index() -> None:
    pub, store = Publisher("r1"), Store("s")
    state = {"vm/a": _record("a", 1)}
    pub.observe([_put(1, 1, "vm/a")], SoftState("follower", "other", 1))
    assert pub.mutations(state, store) == []  # a follower
    pub.observe([], SoftState(LEADER, "me", 2))
    pub.observe([_put(2, 1, "vm/a")], None)
    assert pub.mutations(state, store) == []  # leading, but its barrier is not committed
    pub.observe([E(3, 2, BARRIER)], None)
    (m,) = pub.mutations(state, store)  # established: compares everything once
    store.update(m.key, m.kind, m.mutate)
    reg: Any = store.get("vm/a@r1")  # the region's copy of VM a
    assert (m.key, reg.ts) == ("vm/a@r1", vmflow.stamp(3, "r1"))
    state["vm/b"] = _record("b", 1)
    pub.observe([_put(4, 2, "vm/b"), _put(5, 2, "other/key")], None)
    assert [m.key for m in pub.mutations(state, store)] == ["vm/b@r1"]  # only what was applied
    assert pub.mutations(state, store) == []
    assert pub.heartbeat(0.0, 1000, store_hlc()) is not None
    assert pub.heartbeat(0.1, 1100, store_hlc()) is None  # not due yet (every 200 ms)


def store_hlc() -> Any:
    from novacron_core.clocks import HLC

    return HLC("r1-a")


def _leader(node: RegionNode) -> None:
    """Tick a one-member group until it leads and its barrier is committed."""
    now = 0.0
    node.on_start(now)
    for _ in range(200):
        now += 0.05
        node.on_tick(now)
        if node.soft.role == LEADER and node.publisher.established:
            return
    raise AssertionError("a one-member group did not elect itself")


def test_a_commit_leaves_for_the_other_regions_in_the_ready_that_answers_the_client() -> None:
    peers = {"b": "r1", "c": "r2"}
    fed = FederationPlan("f", "r1", True, peers, SyncConfig(eager=True))
    spec = RegionSpec(
        node_id="a",
        region="r1",
        protocol=RAFT,
        tuning=GroupTuning(election_timeout=0.1, heartbeat_interval=0.02),
        voters=("a",),
        seed=7,
    )
    node = RegionNode(spec, RegionDurable(RAFT.memory_durable()), fed)
    _leader(node)
    rec = _record("web", 1)
    ready = node.on_request(10.0, 1, Propose(encode(KVCommand(CAS, "vm/web", rec, None))))
    ((rid, reply),) = ready.replies
    assert isinstance(reply, Reply)
    assert (rid, reply.status, decode(reply.value or b"", KVResult).ok) == (1, OK, True)
    pushed = {dst: m for dst, m in ready.messages if isinstance(m, Push)}
    assert set(pushed) == {"b", "c"}  # its region's peer, and one node of each other region
    assert pushed["c"].relay
    assert not pushed["b"].relay
    assert [u.key for u in pushed["c"].updates()] == ["vm/web@r1"]
    assert node.replica is not None
    assert node.replica.store.value("vm/web@r1") == rec
    assert any(tag == REPLICA for tag, _ in ready.writes)  # journaled with the group's entry
    assert ready.sync  # and all of it durable before the push and the reply leave


def _file(**over: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "federation": "f",
        "members": [
            {"name": "e", "region": "east", "local": True, "endpoints": ["e-0:7000", "e-1:7000"]},
            {"name": "w", "region": "west", "local": False, "endpoints": ["203.0.113.7:7000"]},
        ],
        "gossip": {"intervalMs": 250, "fanout": 2},
        "antiEntropy": {"intervalSeconds": 30},
        "replication": {"mode": "async", "syncFactor": 0},
        "conflictPolicies": {},
        "failover": {},
        "fromTheFuture": 1,
    }
    doc.update(over)
    return doc


def test_the_plan_names_peers_by_address_and_takes_the_timing_from_the_file() -> None:
    p = plan(parse(json.dumps(_file())), "east", "e-0:7000")
    assert dict(p.peers) == {"e-1:7000": "east", "203.0.113.7:7000": "west"}
    assert (p.sync.interval, p.sync.fanout, p.sync.ae_interval) == (0.25, 2, 30.0)
    assert p.sync.eager
    assert p.member
    assert p.not_honoured == {}
    outsider = plan(parse(json.dumps(_file())), "north", "n-0:7000")
    assert not outsider.member
    assert dict(outsider.peers) == {}
    sync = plan(parse(json.dumps(_file(replication={"mode": "sync", "syncFactor": 1}))), "east", "")
    assert (sync.sync_factor, sync.not_honoured) == (1, {})
    more = plan(parse(json.dumps(_file(replication={"mode": "sync", "syncFactor": 2}))), "east", "")
    assert more.sync_factor == 0  # only one other region: reported, not silently ignored
    assert "replication" in more.not_honoured


@pytest.mark.parametrize(
    ("change", "names"),
    [
        ({"members": []}, "members"),
        ({"gossip": {"intervalMs": "100", "fanout": 3}}, "gossip.intervalMs"),
        ({"replication": {"mode": "eventually"}}, "replication.mode"),
        (
            {"members": [{"name": "e", "region": "east", "endpoints": ["no-port"]}]},
            "members.0.endpoints",
        ),
        (
            {"members": [{"name": "a", "region": "x"}, {"name": "b", "region": "x"}]},
            "members",
        ),
    ],
)
def test_a_bad_file_is_an_error_naming_the_field(change: dict[str, Any], names: str) -> None:
    with pytest.raises(FederationFileError, match=names.replace(".", r"\.")):
        parse(json.dumps(_file(**change)), "federation.json")


def test_a_replica_reconfigured_at_run_time_forgets_removed_peers() -> None:
    node = SyncNode("a", "r1", {"b": "r1", "c": "r2"}, MemoryDurable(), SyncConfig())
    node.on_start(0.0)
    node.known["c"].counters["c~1"] = 3
    ready = node.reconfigure(1.0, {"b": "r1", "d": "r3"}, SyncConfig(interval=0.5))
    assert set(node.peers) == {"b", "d"}
    assert "c" not in node.known
    assert "c" not in node.inflight
    assert node.config.interval == 0.5
    assert ready.wake_at is not None
    assert ready.wake_at <= 1.5
