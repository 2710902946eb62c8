"""When a rejoining node (state lost, abstaining) counts as replaced (``readded``): only when
the config it applied lists it as a learner at or past a commit index a leader announced
after the loss, never on an old learner config met while replaying history."""

from __future__ import annotations

import random

from novacron_core.codec import encode
from novacron_core.consensus.kv import KVStore
from novacron_core.consensus.raft import ConfigState, Entry, RaftConfig, RaftNode, Recovered
from novacron_core.consensus.raft.messages import CONFIG, Append, InstallSnapshot, SnapshotMeta

ABC, AB = ConfigState(("a", "b", "c"), ()), ConfigState(("a", "b"), ())
AB_C = ConfigState(("a", "b"), ("c",))


def _conf(index: int, conf: ConfigState) -> Entry:
    return Entry(1, index, CONFIG, encode(conf))


# c was replaced once before (removed, learner, promoted), then lost its disk again and
# was removed and re-added: indexes 1-4 are the old replace, 5-6 the current one.
HISTORY = [_conf(1, ABC), _conf(2, AB), _conf(3, AB_C), _conf(4, ABC), _conf(5, AB), _conf(6, AB_C)]


def _rejoining() -> RaftNode:
    n = RaftNode("c", Recovered(), KVStore(), random.Random(1), RaftConfig())
    n.abstain = True
    n.on_start(0.0)
    return n


def test_an_old_learner_config_replayed_from_history_does_not_count() -> None:
    n = _rejoining()
    n.on_message(0.1, "a", Append(1, 0, 0, HISTORY[:3], 6))  # leader's commit: 6
    assert n.applied_conf == AB_C  # the *old* learner config
    assert not n.readded()
    n.on_message(0.2, "a", Append(1, 3, 1, HISTORY[3:5], 6))
    assert not n.readded()  # removed again: not a member
    n.on_message(0.3, "a", Append(1, 5, 1, HISTORY[5:], 6))
    assert (n.applied, n.applied_conf) == (6, AB_C)
    assert n.readded()


def test_an_old_snapshot_listing_it_as_a_learner_does_not_count() -> None:
    n = _rejoining()
    n.on_message(0.1, "a", InstallSnapshot(1, SnapshotMeta(3, 1, AB_C), KVStore().snapshot(), 6))
    assert n.applied_conf == AB_C
    assert not n.readded()  # no commit index heard from a leader yet
    n.on_message(0.2, "a", Append(1, 3, 1, HISTORY[3:5], 6))
    assert not n.readded()
    n.on_message(0.3, "a", Append(1, 5, 1, HISTORY[5:], 6))
    assert n.readded()


def test_still_a_voter_in_the_current_config_does_not_count() -> None:
    n = _rejoining()
    n.on_message(0.1, "a", Append(1, 0, 0, HISTORY[:4], 4))
    assert (n.applied, n.applied_conf) == (4, ABC)
    assert not n.readded()
