"""The CRDT store: named values of any CRDT type, with subscriptions. Pure (no I/O).

Persistence lives in :mod:`~novacron_core.sync.persist` (on disk: ``runtime.sync_journal``);
replication in :mod:`~novacron_core.sync.engine`. The store also keeps a Merkle index of its
keys so that anti-entropy can find differing key ranges without shipping the keys.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import msgpack

from novacron_core.clocks import VersionVector
from novacron_core.sync.crdt.base import Crdt, encode_crdt, from_tagged, to_tagged
from novacron_core.sync.merkle import MerkleIndex

C = TypeVar("C", bound=Crdt)
Subscriber = Callable[[str, Crdt], None]


class Store:
    __slots__ = ("_subs", "_values", "merkle", "replica")

    def __init__(self, replica: str) -> None:
        self.replica = replica
        self._values: dict[str, Crdt] = {}
        self._subs: list[tuple[str, Subscriber]] = []
        self.merkle = MerkleIndex(self._digest_source)

    def get(self, key: str) -> Crdt | None:
        return self._values.get(key)

    def value(self, key: str) -> Any:
        v = self._values.get(key)
        return None if v is None else v.value()

    def keys(self) -> list[str]:
        return sorted(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __iter__(self) -> Iterator[tuple[str, Crdt]]:
        return iter(self._values.items())

    def update(self, key: str, kind: type[C], mutate: Callable[[C], Crdt]) -> Crdt:
        """Mutate ``key`` locally (created as ``kind`` if absent); returns the delta."""
        current = self._values.get(key)
        if current is None:
            current = self._values[key] = kind(self.replica)  # type: ignore[call-arg]
        elif not isinstance(current, kind):
            raise TypeError(f"{key!r} holds a {type(current).__name__}, not {kind.__name__}")
        current.replica = self.replica
        delta = mutate(current)
        self._changed(key, current)
        return delta

    def merge(self, key: str, delta: Crdt) -> None:
        """Join a remote delta or state into ``key``."""
        current = self._values.get(key)
        if current is None:
            current = self._values[key] = delta.state_class()(self.replica)  # type: ignore[call-arg]
        elif not isinstance(current, delta.state_class()):
            return  # a peer disagrees about the key's type: keep ours (see docs/sync.md)
        current.merge(delta)
        self._changed(key, current)

    def gc(self, key: str, stable: VersionVector) -> None:
        """Drop ``key``'s metadata about dots every replica has seen (the value is unchanged,
        so subscribers are not called; the encoding may change, so the Merkle leaf is)."""
        current = self._values.get(key)
        if current is not None:
            current.gc(stable)
            self.merkle.touch(key)

    def subscribe(self, prefix: str, callback: Subscriber) -> Callable[[], None]:
        """Call ``callback(key, value)`` after every change to a key under ``prefix``."""
        entry = (prefix, callback)
        self._subs.append(entry)
        return lambda: self._subs.remove(entry)

    def _changed(self, key: str, value: Crdt) -> None:
        self.merkle.touch(key)
        for prefix, cb in self._subs:
            if key.startswith(prefix):
                cb(key, value)

    def _digest_source(self, key: str) -> bytes:
        v = self._values.get(key)
        return b"" if v is None else encode_crdt(v)

    # ------------------------------------------------------------ snapshots

    def snapshot(self) -> bytes:
        out: bytes = msgpack.packb(
            {k: to_tagged(v) for k, v in self._values.items()}, use_bin_type=True
        )
        return out

    def restore(self, blob: bytes) -> None:
        raw = msgpack.unpackb(blob, raw=False, strict_map_key=False)
        self._values = {k: from_tagged(v) for k, v in raw.items()}
        for k, v in self._values.items():
            v.replica = self.replica
            self.merkle.touch(k)
