"""One asyncio lock per key, made on first use and dropped when nobody holds or waits for
it, with a bound on how many may wait: updates of one VM queue instead of racing."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator


class QueueFull(Exception):
    """More than ``max_waiters`` are already waiting for this key."""


class KeyedLock:
    def __init__(self, max_waiters: int) -> None:
        self.max_waiters = max_waiters
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    def __len__(self) -> int:
        return len(self._locks)

    @contextlib.asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        if users >= self.max_waiters:
            raise QueueFull(key)
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users <= 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)
