"""Unit behaviour of the log, the durable write records and the KV store's sessions."""

from __future__ import annotations

from dataclasses import replace

from novacron_core.codec import decode, encode
from novacron_core.consensus.kv import CAS, PUT, KVCommand, KVQuery, KVResult, KVStore
from novacron_core.consensus.raft import (
    OK,
    AppendEntries,
    ConfigState,
    Entry,
    HardState,
    MemoryStorage,
    Propose,
    RaftConfig,
    RaftLog,
    Read,
    Reply,
    SaveSnapshot,
    SnapshotMeta,
)
from novacron_core.consensus.raft.reads import ReadQueue
from tests.consensus.cluster import FAST, SimCluster


def _log(*terms: int) -> RaftLog:
    return RaftLog(SnapshotMeta(), [Entry(t, i + 1) for i, t in enumerate(terms)])


def test_append_truncates_a_conflicting_suffix() -> None:
    log = _log(1, 1, 2, 2)
    log.append([Entry(3, 3), Entry(3, 4), Entry(3, 5)])
    assert [e.term for e in log.entries] == [1, 1, 3, 3, 3]


def test_fast_backtracking_skips_a_whole_term() -> None:
    log = _log(1, 1, 4, 4, 4, 4)
    # The leader's prev entry (index 6, term 5) is unknown here: the follower hints the last
    # index whose term is <= 5, and a leader with terms up to 2 jumps straight past term 4.
    assert log.find_by_term(6, 5) == 6
    assert log.find_by_term(6, 2) == 2


def test_compaction_keeps_a_matching_suffix_and_drops_a_divergent_log() -> None:
    log = _log(1, 1, 2, 2)
    log.compact(SnapshotMeta(2, 1, ConfigState(("a",))))
    assert (log.first_index, log.last_index, log.term(2), log.term(1)) == (3, 4, 1, None)
    log.compact(SnapshotMeta(6, 9, ConfigState(("a",))))
    assert (log.entries, log.last_index, log.last_term) == ([], 6, 9)


def test_storage_replays_writes_like_the_live_log() -> None:
    disk = MemoryStorage()
    disk.apply([HardState(3, "n2"), AppendEntries([Entry(1, 1), Entry(1, 2), Entry(2, 3)])])
    disk.apply([AppendEntries([Entry(3, 2)]), SaveSnapshot(SnapshotMeta(1, 1), b"s")])
    got = disk.load()
    assert got.hard == HardState(3, "n2")
    assert [(e.index, e.term) for e in got.entries] == [(2, 3)]
    assert (got.snap.index, got.snap_data) == (1, b"s")


def test_retried_command_applies_exactly_once() -> None:
    kv = KVStore()
    cas = encode(KVCommand(CAS, "vm", b"on", None, client="c1", seq=1))
    first = decode(kv.apply(1, cas) or b"", KVResult)
    kv.apply(2, encode(KVCommand(PUT, "vm", b"off", client="c2", seq=1)))
    again = decode(kv.apply(3, cas) or b"", KVResult)  # the retry after a lost reply
    assert first.ok
    assert again.ok  # the first outcome, not a second (failing) swap
    assert kv.data["vm"] == b"off"
    older = decode(kv.apply(4, encode(KVCommand(PUT, "vm", b"x", client="c1", seq=0))) or b"")
    assert isinstance(older, KVResult)
    assert older.stale
    assert kv.data["vm"] == b"off"


def test_snapshot_restores_data_and_sessions() -> None:
    kv = KVStore()
    kv.apply(1, encode(KVCommand(PUT, "a", b"1", client="c", seq=5)))
    other = KVStore()
    other.restore(kv.snapshot())
    assert decode(other.query(encode(KVQuery("a"))) or b"", KVResult).value == b"1"
    assert other.sessions["c"].seq == 5


def test_leader_steps_down_without_quorum_and_majority_moves_on() -> None:
    c = SimCluster(seed=11)
    old = c.wait_leader()
    rest = [n for n in c.names if n != old]
    c.world.partition([{old}, set(rest)])
    c.world.run_for(3.0)
    assert c.node(old).role != "leader"
    new = c.leader()
    assert new in rest
    assert c.node(old).term < c.node(new).term  # PreVote: the loner did not inflate its term


def test_crashed_follower_recovers_its_log_from_disk() -> None:
    c = SimCluster(seed=5)
    c.wait_leader()
    for i in range(60):  # beyond snapshot_entries: recovery goes through a snapshot
        c.put(f"k{i}", b"v")
    lead = c.wait_leader()
    follower = next(n for n in c.names if n != lead)
    c.world.crash(follower, lose_unsynced=True)
    c.world.restart(follower)
    m = c.node(follower)
    assert m.log.snap.index > 0
    c.world.run_for(1.0)
    assert c.node(follower).commit == c.node(lead).commit
    kv = c.node(follower).sm
    assert isinstance(kv, KVStore)
    assert kv.data["k59"] == b"v"


def _read_from_partitioned_old_leader(config: RaftConfig) -> Reply | None:
    c = SimCluster(seed=21, config=config)
    c.put("k", b"v1")
    c.world.run_for(0.5)  # a few heartbeat rounds: the leader holds a lease (in lease mode)
    old = c.wait_leader()
    c.world.partition([{old}, {n for n in c.names if n != old}])
    c.world.run_while(lambda: c.leader() in (None, old), c.world.now + 5.0)
    new = c.leader()
    assert new is not None
    assert new != old
    assert c.call(new, Propose(encode(KVCommand(PUT, "k", b"v2")))) is not None
    return c.call(old, Read(encode(KVQuery("k"))), limit=1.0)


def test_partitioned_old_leader_never_serves_a_stale_read() -> None:
    reply = _read_from_partitioned_old_leader(FAST)
    assert reply is None or reply.status != OK


def test_a_lease_longer_than_the_election_timeout_serves_stale_reads() -> None:
    # Why lease reads need lease < election timeout (bounded drift): a misconfigured lease
    # lets the deposed leader answer from its old state.
    bad = replace(FAST, read_mode="lease", lease_drift=-20.0, check_quorum=False)
    reply = _read_from_partitioned_old_leader(bad)
    assert reply is not None
    assert reply.status == OK
    assert reply.value is not None
    assert decode(reply.value, KVResult).value == b"v1"


def test_least_recently_used_session_is_evicted_deterministically() -> None:
    kv = KVStore(max_sessions=2, session_buckets=1)
    for i, client in enumerate(["a", "b", "a", "c"], 1):
        kv.apply(i, encode(KVCommand(PUT, "k", b"v", client=client, seq=i)))
    assert list(kv.sessions) == ["a", "c"]
    again = KVStore(max_sessions=2, session_buckets=1)
    again.restore(kv.snapshot())
    assert list(again.sessions) == ["a", "c"]


def test_unconfirmed_heartbeat_rounds_do_not_pile_up() -> None:
    q = ReadQueue()
    q.open(1, 0.0).waiters.append(("rid", b"q"))
    for i in range(10_000):
        q.open(1, float(i))
    assert len(q.rounds) <= 258
    assert q.rounds[0].waiters == [("rid", b"q")]
