"""Drives one sans-IO machine on asyncio: inputs in, Ready carried out with group commit.

Inputs (peer messages, client requests, timer ticks, other events) queue up while the
previous batch is being fsynced; the next batch takes all of them, so one fsync covers many
proposals and messages — the batching that makes a Python consensus group fast enough (etcd
does the same). Order per batch is the Ready contract: persist (+fsync), then send, then
reply. Nothing here knows which protocol runs: the machine's owner supplies the storage
(what its writes mean), how a batch's messages may be coalesced, and what to do after a
batch is durable.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from novacron_core.machine import Machine, NodeId, Ready
from novacron_core.runtime.aio import wait_set
from novacron_core.runtime.heap import log_slow_gc
from novacron_core.runtime.metrics import NodeMetrics

Messages = list[tuple[NodeId, Any]]
log = logging.getLogger(__name__)
# A batch that holds the event loop this long is logged: past the election timeout (200 ms)
# it costs the group its leader, and the log line says which part (step or storage) it was.
SLOW_BATCH_S = 0.05


class Storage(Protocol):
    """Where a machine's writes go: ``apply`` hands them to the OS, ``sync`` makes
    everything applied so far durable."""

    def apply(self, writes: list[Any]) -> None: ...

    def sync(self) -> None: ...


class Driver:
    def __init__(
        self,
        machine: Machine,
        storage: Storage,
        send: Callable[[NodeId, Any], None],
        metrics: NodeMetrics,
        max_batch: int = 4096,
        coalesce: Callable[[Messages], Messages] | None = None,
    ) -> None:
        self.machine = machine
        self.storage = storage
        self.send = send
        self.metrics = metrics
        self.max_batch = max_batch
        self.coalesce = coalesce
        self._inbox: deque[tuple[int, Any, Any]] = deque()
        self._event = asyncio.Event()
        self._futures: dict[int, asyncio.Future[Any]] = {}
        # requests answered by callback (the wire API: no future or task per request), by
        # id while queued or proposed; ``_queued`` holds those not yet handed to the machine
        self._callbacks: dict[int, Callable[[Any], None]] = {}
        self._queued: set[int] = set()
        self._ids = itertools.count(1)
        self._wake_at: float | None = None
        self._stopped = False
        self.loop = asyncio.get_running_loop()
        # Runs with each batch's Ready after its writes are durable and before its messages
        # and replies go out (the node re-dials changed members here, so the first message
        # to a member added in this batch finds its address).
        self.after_persist: Callable[[Ready], None] | None = None

    # ---------------------------------------------------------------- inputs

    def deliver(self, src: NodeId, msg: Any) -> None:
        self._inbox.append((0, src, msg))
        self._event.set()

    def inject(self, event: Callable[[float], Ready]) -> None:
        """Queue any other input of the machine, run as ``event(now)`` in the next batch
        (e.g. ``lambda now: machine.on_peer_unreachable(now, peer)``)."""
        self._inbox.append((2, event, None))
        self._event.set()

    async def request(self, req: Any, deadline_s: float = 5.0) -> Any:
        """The machine's reply to ``req``; TimeoutError when none came within the deadline
        (the request may still take effect: its outcome is unknown)."""
        rid = next(self._ids)
        fut: asyncio.Future[Any] = self.loop.create_future()
        self._futures[rid] = fut
        self._inbox.append((1, rid, req))
        self._event.set()
        try:
            return await asyncio.wait_for(fut, deadline_s)
        finally:
            self._futures.pop(rid, None)

    def submit(self, req: Any, on_reply: Callable[[Any], None]) -> int:
        """Queue ``req``; ``on_reply(reply)`` runs once the machine answers it. Returns an id
        for :meth:`withdraw`. Cheaper than :meth:`request` (no future, no timer)."""
        rid = next(self._ids)
        self._callbacks[rid] = on_reply
        self._queued.add(rid)
        self._inbox.append((1, rid, req))
        self._event.set()
        return rid

    def withdraw(self, rid: int) -> bool:
        """Stop waiting for a submitted request's reply. True: it was still queued and is now
        dropped unseen (certainly not applied); False: the machine already has it (its
        outcome is unknown) or it was answered."""
        self._callbacks.pop(rid, None)
        if rid in self._queued:
            self._queued.discard(rid)
            return True
        return False

    @property
    def pending(self) -> int:
        return len(self._futures) + len(self._callbacks)

    # ---------------------------------------------------------------- the loop

    async def run(self) -> None:
        log_slow_gc(SLOW_BATCH_S)  # a collection holds the loop as a slow step does
        await self._carry_out(self.machine.on_start(self.loop.time()))
        while not self._stopped:
            if not self._inbox:
                timeout = None
                if self._wake_at is not None:
                    timeout = max(0.0, self._wake_at - self.loop.time())
                await wait_set(self._event, timeout)
            self._event.clear()
            batch = Ready()
            now = self.loop.time()
            # Queued input first, then the timer: what arrived before the timer fired
            # (a heartbeat, the answers CheckQuorum counts) is older news than the timer,
            # and after a stretch of event-loop lag both are due at once.
            n = 0
            t_step = time.perf_counter()
            while self._inbox and n < self.max_batch:
                kind, a, b = self._inbox.popleft()
                n += 1
                if kind == 0:
                    batch.extend(self.machine.on_message(now, a, b))
                elif kind == 1:
                    if a in self._queued:
                        self._queued.discard(a)
                    elif a not in self._futures:
                        continue  # withdrawn while queued: never proposed
                    batch.extend(self.machine.on_request(now, a, b))
                else:
                    batch.extend(a(now))
            if self._wake_at is not None and now >= self._wake_at:
                self._wake_at = None
                batch.extend(self.machine.on_tick(now))
            step_s = time.perf_counter() - t_step
            if step_s > SLOW_BATCH_S:
                log.warning("slow step: %.0f ms for %d inputs", step_s * 1000, n)
            await self._carry_out(batch)

    async def _carry_out(self, ready: Ready) -> None:
        if ready.writes:
            t0 = time.perf_counter()
            self.storage.apply(ready.writes)
            apply_s = time.perf_counter() - t0
            if apply_s > SLOW_BATCH_S:
                kinds = sorted({type(w).__name__ for w in ready.writes})
                log.warning("slow storage apply: %.0f ms (%s)", apply_s * 1000, ",".join(kinds))
        if ready.sync:
            t0 = time.perf_counter()
            await self.loop.run_in_executor(None, self.storage.sync)
            self.metrics.fsync_seconds.observe(time.perf_counter() - t0)
        if self.after_persist is not None:
            self.after_persist(ready)
        messages = self.coalesce(ready.messages) if self.coalesce else ready.messages
        for dst, msg in messages:
            self.send(dst, msg)
        callbacks = self._callbacks
        for rid, result in ready.replies:
            cb = callbacks.pop(rid, None)
            if cb is not None:
                cb(result)
                continue
            fut = self._futures.get(rid)
            if fut is not None and not fut.done():
                fut.set_result(result)
        if ready.wake_at is not None:
            self._wake_at = ready.wake_at

    def stop(self) -> None:
        self._stopped = True
        self._event.set()
