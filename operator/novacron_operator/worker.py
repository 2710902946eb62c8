"""A deduplicating work queue: many triggers (events, timers, children) per key collapse
into one pending reconcile, and one key never reconciles concurrently with itself."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from prometheus_client import Counter, Gauge, Histogram

from novacron_operator.reconcile import Follow, Key, Later

log = logging.getLogger("novacron.worker")
RECONCILES = Counter("novacron_operator_reconciles_total", "Reconcile passes", ["kind", "result"])
DURATION = Histogram(
    "novacron_operator_reconcile_seconds",
    "Reconcile pass duration",
    ["kind"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
QUEUE = Gauge("novacron_operator_queue_depth", "Keys waiting for a reconcile")

Reconciler = Callable[[Key], Awaitable[Follow]]


class WorkQueue:
    # a failing pass is retried after 1, 2, 4 ... seconds, at most MAX_BACKOFF apart (as
    # client-go's rate-limited queue); events and the resync timer still ask for passes
    BASE_BACKOFF = 1.0
    MAX_BACKOFF = 60.0

    def __init__(self, reconcile: Reconciler, workers: int = 4) -> None:
        self.reconcile = reconcile
        self.workers = workers
        self.queue: asyncio.Queue[Key] = asyncio.Queue()
        self.pending: set[Key] = set()
        self.active: set[Key] = set()
        self.dirty: set[Key] = set()
        self.soon: set[Key] = set()  # add_soon keys waiting for their delay
        self.enabled = False  # only the leader works; followers drop triggers
        self.durations: list[float] = []
        self.failures: dict[Key, int] = {}  # consecutive failed passes, per key

    def add(self, key: Key) -> None:
        if not self.enabled:
            return
        if key in self.active:
            self.dirty.add(key)  # rerun after the current pass: it may have read stale state
        elif key not in self.pending:
            self.pending.add(key)
            self.queue.put_nowait(key)
        QUEUE.set(len(self.pending))

    def add_soon(self, key: Key, delay: float) -> None:
        """``add`` after ``delay``, once however many times it is asked meanwhile: a new
        region's dozen children report a burst of status changes, and one pass after the
        burst sees them all (a pass per change would write each step into status)."""
        if not self.enabled or key in self.pending or key in self.soon:
            return
        if delay <= 0:
            self.add(key)
            return
        self.soon.add(key)

        def fire() -> None:
            self.soon.discard(key)
            self.add(key)

        asyncio.get_running_loop().call_later(delay, fire)

    async def _work(self) -> None:
        while True:
            key = await self.queue.get()
            self.pending.discard(key)
            QUEUE.set(len(self.pending))
            if not self.enabled:
                continue
            self.active.add(key)
            start = time.perf_counter()
            follow: Follow
            try:
                follow = await self.reconcile(key)
                RECONCILES.labels(key.kind, "ok").inc()
                self.failures.pop(key, None)
            except Exception as e:
                RECONCILES.labels(key.kind, "error").inc()
                delay = self.backoff(key)
                log.warning(
                    "reconcile %s/%s/%s failed (retry in %.0fs): %s",
                    key.kind,
                    key.namespace,
                    key.name,
                    delay,
                    e,
                )
                follow = []
                asyncio.get_running_loop().call_later(delay, self.add, key)
            finally:
                elapsed = time.perf_counter() - start
                DURATION.labels(key.kind).observe(elapsed)
                self.durations.append(elapsed)
                del self.durations[:-10000]
                self.active.discard(key)
            for k in follow:
                if isinstance(k, Later):
                    asyncio.get_running_loop().call_later(k.seconds, self.add, k.key)
                else:
                    self.add(k)
            if key in self.dirty:
                self.dirty.discard(key)
                self.add(key)

    def backoff(self, key: Key) -> float:
        n = self.failures.get(key, 0)
        self.failures[key] = n + 1
        return float(min(self.BASE_BACKOFF * 2 ** min(n, 16), self.MAX_BACKOFF))

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            for _ in range(self.workers):
                tg.create_task(self._work())
