"""A snapshot taken now and encoded later: the state machine freezes its state (cheap: a
shallow copy) in the protocol step, and the bytes are made once, by whoever needs them first
— the runtime's storage thread, which writes the snapshot off the event loop, or the leader
sending it to a lagging follower.

Why: encoding the whole state in the step held the event loop for as long as the state is
big (0.76 s for 138 MiB on the 2-core machine under load); a leader holding its loop past
the election timeout loses its followers (issue 18's broken 1 KiB / 16 KiB rows).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Protocol, runtime_checkable


class Deferred:
    """The bytes of a snapshot, encoded on first use (from any thread, once)."""

    __slots__ = ("_data", "_encode", "_lock")

    def __init__(self, encode: Callable[[], bytes]) -> None:
        self._encode: Callable[[], bytes] | None = encode
        self._data: bytes | None = None
        self._lock = threading.Lock()

    def data(self) -> bytes:
        with self._lock:
            if self._data is None:
                assert self._encode is not None
                self._data = self._encode()
                self._encode = None  # drop the frozen state it held
            return self._data


SnapshotData = bytes | Deferred


def snapshot_bytes(d: SnapshotData) -> bytes:
    return d.data() if isinstance(d, Deferred) else d


@runtime_checkable
class Capturing(Protocol):
    """A state machine that can freeze its state cheaply and encode it later.
    ``capture()()`` must equal ``snapshot()`` at the time of the capture."""

    def capture(self) -> Callable[[], bytes]: ...


__all__ = ["Capturing", "Deferred", "SnapshotData", "snapshot_bytes"]
