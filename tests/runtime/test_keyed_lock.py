"""Per-key queueing for VM updates: one holder per key at a time, others wait in order, a
bound on waiters, and nothing kept once a key is idle."""

from __future__ import annotations

import asyncio

import pytest

from novacron_core.runtime.keyed_lock import KeyedLock, QueueFull


async def test_one_holder_per_key_in_arrival_order_and_nothing_kept_after() -> None:
    locks = KeyedLock(max_waiters=8)
    order: list[int] = []
    inside = 0

    async def user(i: int, key: str) -> None:
        nonlocal inside
        async with locks.hold(key):
            inside += 1
            assert inside == 1 or key == "other"
            order.append(i)
            await asyncio.sleep(0.01)
            inside -= 1

    await asyncio.gather(*(user(i, "vm") for i in range(5)))
    assert order == [0, 1, 2, 3, 4]
    assert len(locks) == 0


async def test_waiters_beyond_the_bound_are_refused() -> None:
    locks = KeyedLock(max_waiters=2)
    release = asyncio.Event()

    async def hold() -> None:
        async with locks.hold("vm"):
            await release.wait()

    tasks = [asyncio.create_task(hold()) for _ in range(2)]
    await asyncio.sleep(0)
    with pytest.raises(QueueFull):
        async with locks.hold("vm"):
            pass
    async with locks.hold("another-vm"):  # other keys are not affected
        pass
    release.set()
    await asyncio.gather(*tasks)
    assert len(locks) == 0
