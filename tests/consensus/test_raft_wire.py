"""Every Raft record survives the codec unchanged (the runtime sends them encoded)."""

from __future__ import annotations

from typing import Any

import msgpack
from hypothesis import given
from hypothesis import strategies as st

from novacron_core.codec import decode, encode, to_wire
from novacron_core.consensus.kv import KVCommand, KVSnapshot, Session
from novacron_core.consensus.raft import (
    AppendEntries,
    ChangeMember,
    ConfigState,
    Entry,
    HardState,
    MemberAddress,
    Reply,
    SaveSnapshot,
    SnapshotMeta,
)
from novacron_core.consensus.raft.messages import (
    Append,
    AppendResp,
    InstallSnapshot,
    SnapshotChunk,
    SnapshotChunkResp,
    TimeoutNow,
    Vote,
    VoteResp,
)

idx = st.integers(0, 2**62)
names = st.text(min_size=1, max_size=8)
entries = st.lists(st.builds(Entry, idx, idx, st.integers(0, 2), st.binary(max_size=64)))
addresses = st.lists(st.builds(MemberAddress, names, names, names)).map(tuple)
configs = st.builds(
    ConfigState, st.tuples(names, names).map(tuple), st.lists(names).map(tuple), addresses
)
metas = st.builds(SnapshotMeta, idx, idx, configs)
records = st.one_of(
    st.builds(Vote, idx, idx, idx, st.booleans(), st.booleans()),
    st.builds(VoteResp, idx, st.booleans(), st.booleans()),
    st.builds(Append, idx, idx, idx, entries, idx, idx),
    st.builds(AppendResp, idx, st.booleans(), idx, idx, idx, idx),
    st.builds(InstallSnapshot, idx, metas, st.binary(max_size=64), idx),
    st.builds(TimeoutNow, idx),
    st.builds(SnapshotChunk, idx, metas, idx, st.binary(max_size=64), st.booleans(), idx),
    st.builds(SnapshotChunkResp, idx, idx, idx, idx, st.booleans()),
    st.builds(ChangeMember, names, names, names, names),
    st.builds(HardState, idx, st.none() | names),
    st.builds(AppendEntries, entries),
    st.builds(SaveSnapshot, metas, st.binary(max_size=64)),
    st.builds(
        Reply, st.sampled_from(["ok", "unknown"]), st.none() | st.binary(), st.none() | names
    ),
    st.builds(
        KVCommand,
        st.sampled_from(["put", "cas"]),
        names,
        st.none() | st.binary(),
        st.none() | st.binary(),
        names,
        idx,
    ),
    st.builds(
        KVSnapshot,
        st.dictionaries(names, st.binary(max_size=8)),
        st.dictionaries(names, st.builds(Session, idx, st.binary(max_size=8))),
        idx,
    ),
)


@given(records)
def test_raft_records_round_trip(rec: Any) -> None:
    assert decode(encode(rec)) == rec


def test_a_config_written_before_addresses_existed_still_decodes() -> None:
    # Logs and snapshots on disk hold ConfigState records without the trailing field.
    wire = to_wire(ConfigState(("n1", "n2"), ("n3",)))
    assert wire[-1] == []
    got = decode(msgpack.packb(wire[:-1]), ConfigState)
    assert got == ConfigState(("n1", "n2"), ("n3",), ())
