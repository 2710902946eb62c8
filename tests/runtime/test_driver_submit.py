"""Driver.submit/withdraw (what the wire API hands requests over with): a withdrawn request
still queued never reaches the machine (so "not applied" is true); one the machine already
has cannot be withdrawn (its outcome is unknown); replies arrive by callback."""

from __future__ import annotations

import asyncio
from typing import Any

from novacron_core.machine import Ready
from novacron_core.runtime.driver import Driver
from novacron_core.runtime.metrics import NodeMetrics


class Echo:
    """A machine that answers each request with itself, and remembers what it saw."""

    def __init__(self) -> None:
        self.seen: list[Any] = []

    def on_start(self, now: float) -> Ready:
        return Ready()

    def on_message(self, now: float, src: str, msg: Any) -> Ready:
        return Ready()

    def on_tick(self, now: float) -> Ready:
        return Ready()

    def on_request(self, now: float, rid: Any, req: Any) -> Ready:
        self.seen.append(req)
        r = Ready()
        r.reply(rid, f"done {req}")
        return r


class NoStorage:
    def apply(self, writes: list[Any]) -> None:
        pass

    def sync(self) -> None:
        pass


async def test_withdrawn_while_queued_never_reaches_the_machine() -> None:
    machine = Echo()
    driver = Driver(machine, NoStorage(), lambda d, m: None, NodeMetrics(enabled=False))
    got: list[Any] = []
    kept = driver.submit("a", got.append)
    dropped = driver.submit("b", got.append)
    assert driver.pending == 2
    assert driver.withdraw(dropped) is True  # still queued: certainly not applied
    task = asyncio.create_task(driver.run())
    for _ in range(100):
        if got:
            break
        await asyncio.sleep(0.01)
    assert got == ["done a"]
    assert machine.seen == ["a"]
    assert driver.withdraw(kept) is False  # answered already: nothing to withdraw
    assert driver.pending == 0
    driver.stop()
    await task
