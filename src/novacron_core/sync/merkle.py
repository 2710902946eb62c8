"""A two-level Merkle index over key hashes, for anti-entropy.

Keys fall into ``RANGES * LEAVES`` buckets by a hash of the key; a leaf's hash is the XOR of
``h(key, h(state))`` over its keys, a range's hash the hash of its leaves. Two replicas first
compare the range hashes, then the leaf hashes of differing ranges, then exchange the states
of keys in differing leaves only. State hashes are computed lazily: a change only marks a key.
"""

from __future__ import annotations

from collections.abc import Callable
from hashlib import blake2b

RANGES = 16
LEAVES = 16


def _h(data: bytes) -> int:
    return int.from_bytes(blake2b(data, digest_size=8).digest(), "big")


def bucket_of(key: str) -> int:
    return _h(key.encode()) % (RANGES * LEAVES)


class MerkleIndex:
    __slots__ = ("_bucket", "_dirty", "_item", "_keys", "_leaf", "_source")

    def __init__(self, source: Callable[[str], bytes]) -> None:
        self._source = source  # key -> canonical state bytes
        self._bucket: dict[str, int] = {}
        self._item: dict[str, int] = {}  # key -> its contribution to the leaf hash
        self._keys: list[set[str]] = [set() for _ in range(RANGES * LEAVES)]
        self._leaf = [0] * (RANGES * LEAVES)
        self._dirty: set[str] = set()

    def touch(self, key: str) -> None:
        self._dirty.add(key)

    def _refresh(self) -> None:
        for key in self._dirty:
            b = self._bucket.get(key)
            if b is None:
                b = self._bucket[key] = bucket_of(key)
                self._keys[b].add(key)
            item = _h(key.encode() + _h(self._source(key)).to_bytes(8, "big"))
            self._leaf[b] ^= self._item.get(key, 0) ^ item
            self._item[key] = item
        self._dirty.clear()

    def range_hashes(self) -> list[int]:
        self._refresh()
        return [
            _h(b"".join(x.to_bytes(8, "big") for x in self._leaf[r * LEAVES : (r + 1) * LEAVES]))
            for r in range(RANGES)
        ]

    def leaf_hashes(self, r: int) -> list[int]:
        self._refresh()
        return self._leaf[r * LEAVES : (r + 1) * LEAVES]

    def keys_in(self, leaf: int) -> list[str]:
        self._refresh()
        return sorted(self._keys[leaf])
