"""Affinity hashing: a ring moves about 1/N of the keys when one of N nodes leaves, and
only that node's keys; Maglev balances to within one slot and, with M > 100 N (the
paper's advice), moves the removed backend's keys plus a small extra share."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from novacron_core.balancing import HashRing, Maglev, key_hash, prime_at_least

KEYS = [f"session-{i}".encode() for i in range(8000)]
names = st.lists(
    st.text("abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=12),
    min_size=3,
    max_size=16,
    unique=True,
)
SETTINGS = settings(max_examples=25, deadline=None)


def moved(before: HashRing | Maglev, after: HashRing | Maglev) -> list[tuple[str, str]]:
    out = []
    for k in KEYS:
        a, b = before.lookup(k), after.lookup(k)
        if a != b:
            out.append((a, b))
    return out


@SETTINGS
@given(names, st.data())
def test_ring_moves_only_the_leaving_nodes_keys_about_one_nth(
    nodes: list[str], data: st.DataObject
) -> None:
    gone = data.draw(st.sampled_from(nodes))
    before = HashRing(nodes)
    after = HashRing([n for n in nodes if n != gone])
    changes = moved(before, after)
    assert all(a == gone for a, _ in changes)  # nobody else's keys move
    owned = sum(before.lookup(k) == gone for k in KEYS)
    assert len(changes) == owned  # and all of its keys do
    ideal = len(KEYS) / len(nodes)
    # 150 points per node keep a node's share within a few tens of percent of 1/N
    assert 0.55 * ideal <= len(changes) <= 1.5 * ideal


@SETTINGS
@given(names)
def test_ring_adding_a_node_takes_keys_only_for_itself(nodes: list[str]) -> None:
    before = HashRing(nodes[:-1])
    after = HashRing(nodes)
    assert all(b == nodes[-1] for _, b in moved(before, after))


def test_ring_weights_scale_points() -> None:
    ring = HashRing({"a": 1, "b": 3})
    share_b = sum(ring.lookup(k) == "b" for k in KEYS) / len(KEYS)
    assert 0.65 < share_b < 0.85


@SETTINGS
@given(names)
def test_maglev_shares_differ_by_at_most_one_slot(nodes: list[str]) -> None:
    m = Maglev(nodes, prime_at_least(100 * len(nodes)))
    shares = m.shares().values()
    assert sum(shares) == m.size
    assert max(shares) - min(shares) <= 1


@settings(max_examples=8, deadline=None)
@given(names, st.data())
def test_maglev_removal_moves_the_removed_keys_and_little_else(
    nodes: list[str], data: st.DataObject
) -> None:
    gone = data.draw(st.sampled_from(nodes))
    size = 65537  # the paper's table size
    before = Maglev(nodes, size)
    after = Maglev([n for n in nodes if n != gone], size)
    changes = moved(before, after)
    owned = sum(before.lookup(k) == gone for k in KEYS)
    assert sum(a == gone for a, _ in changes) == owned
    extra = sum(a != gone for a, _ in changes)
    # the paper's figure 12: with M >> N the disruption stays close to the minimum
    # (measured here: at most ~0.5% of keys beyond the removed backend's own)
    assert extra <= 0.01 * len(KEYS)


def test_maglev_weights_are_relative_turns() -> None:
    m = Maglev({"a": 1, "b": 2, "c": 1}, 10007)
    s = m.shares()
    assert abs(s["b"] - 2 * s["a"]) <= 2
    assert abs(s["a"] - s["c"]) <= 1


def test_maglev_follows_the_papers_populate() -> None:
    """A direct transcription of the paper's Pseudocode 1 fills the same table."""
    import xxhash

    nodes, m = ["b0", "b1", "b2"], 7
    offset = [xxhash.xxh3_64_intdigest(n.encode(), seed=0x4D61676C) % m for n in nodes]
    skip = [xxhash.xxh3_64_intdigest(n.encode(), seed=0x65764D61) % (m - 1) + 1 for n in nodes]
    perm = [[(offset[i] + j * skip[i]) % m for j in range(m)] for i in range(3)]
    nxt, entry, n = [0, 0, 0], [-1] * m, 0
    while True:
        for i in range(3):
            c = perm[i][nxt[i]]
            while entry[c] >= 0:
                nxt[i] += 1
                c = perm[i][nxt[i]]
            entry[c] = i
            nxt[i] += 1
            n += 1
            if n == m:
                break
        if n == m:
            break
    table = Maglev(nodes, m)
    assert [table.lookup_hash(slot) for slot in range(m)] == [nodes[i] for i in entry]


def test_lookups_are_stable_across_processes() -> None:
    # xxh3 of the bytes, not Python's salted hash(): every gateway replica agrees
    assert key_hash(b"vm-1") == key_hash("vm-1") == 0x436BCCC82133635A  # xxh3-64 is specified
    ring1, ring2 = HashRing(["x", "y", "z"]), HashRing(["z", "y", "x"])
    assert all(ring1.lookup(k) == ring2.lookup(k) for k in KEYS[:500])


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(ValueError, match="prime"):
        Maglev(["a"], 100)
    with pytest.raises(ValueError, match="smaller"):
        Maglev(["a", "b", "c"], 2)
    with pytest.raises(ValueError, match="weight"):
        HashRing({"a": 0})
    with pytest.raises(LookupError):
        HashRing([]).lookup("k")
