"""The work queue collapses bursts of triggers and never runs one key concurrently."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

from novacron_operator.reconcile import Follow, Key, Later
from novacron_operator.worker import WorkQueue


async def test_burst_of_triggers_collapses_and_rerun_follows_mid_pass_change() -> None:
    runs: list[Key] = []
    running: set[Key] = set()
    overlap = False
    gate = asyncio.Event()

    async def reconcile(key: Key) -> list[Key]:
        nonlocal overlap
        overlap = overlap or key in running
        running.add(key)
        runs.append(key)
        await gate.wait()
        running.discard(key)
        return []

    q = WorkQueue(reconcile, workers=3)
    q.enabled = True
    a, b = Key("NovaCronRegion", "ns", "a"), Key("NovaCronRegion", "ns", "b")
    task = asyncio.create_task(q.run())
    for _ in range(50):
        q.add(a)
    q.add(b)
    await asyncio.sleep(0.05)
    assert sorted(k.name for k in runs) == ["a", "b"]  # 50 triggers of a: one pass so far
    q.add(a)  # arrives mid-pass: must cause exactly one more pass, after this one
    gate.set()
    await asyncio.sleep(0.05)
    task.cancel()
    assert [k.name for k in runs].count("a") == 2
    assert not overlap


async def test_followers_drop_triggers_until_elected() -> None:
    seen: list[Key] = []

    async def reconcile(key: Key) -> list[Key]:
        seen.append(key)
        return []

    q = WorkQueue(reconcile, workers=1)
    task = asyncio.create_task(q.run())
    q.add(Key("NovaCronCluster", "ns", "c"))
    await asyncio.sleep(0.02)
    assert seen == []
    q.enabled = True
    q.add(Key("NovaCronCluster", "ns", "c"))
    await asyncio.sleep(0.02)
    task.cancel()
    assert len(seen) == 1


async def test_later_requeues_after_its_delay_not_at_once() -> None:
    runs: list[float] = []
    key = Key("NovaCronRegion", "ns", "a")

    async def reconcile(k: Key) -> Follow:
        runs.append(asyncio.get_running_loop().time())
        return [Later(k, 0.1)] if len(runs) < 3 else []

    q = WorkQueue(reconcile, workers=1)
    q.enabled = True
    task = asyncio.create_task(q.run())
    q.add(key)
    await asyncio.sleep(0.5)
    task.cancel()
    assert len(runs) == 3
    assert all(b - a >= 0.09 for a, b in itertools.pairwise(runs))


async def test_add_soon_collapses_a_burst_into_one_pass_after_the_delay() -> None:
    runs: list[Key] = []

    async def reconcile(key: Key) -> list[Key]:
        runs.append(key)
        return []

    q = WorkQueue(reconcile, workers=2)
    q.enabled = True
    a = Key("NovaCronRegion", "ns", "a")
    task = asyncio.create_task(q.run())
    for _ in range(20):
        q.add_soon(a, 0.1)
    await asyncio.sleep(0.05)
    assert runs == []  # still waiting out the burst
    await asyncio.sleep(0.15)
    assert runs == [a]
    q.add_soon(a, 0.05)  # a later change gets its own pass
    await asyncio.sleep(0.15)
    task.cancel()
    assert runs == [a, a]


async def test_a_failing_pass_is_retried_with_exponential_backoff_then_reset() -> None:
    """A child the API server keeps refusing must not be retried every 2 s forever."""
    times: list[float] = []
    outcome = iter([False, False, False, True, False])

    async def reconcile(key: Key) -> Follow:
        times.append(asyncio.get_running_loop().time())
        if not next(outcome):
            raise RuntimeError("422 refused")
        return []

    q = WorkQueue(reconcile, workers=1)
    q.BASE_BACKOFF = 0.05
    q.enabled = True
    key = Key("NovaCronRegion", "ns", "r")
    task = asyncio.create_task(q.run())
    q.add(key)
    for _ in range(500):  # three failures, then a success (~0.35 s; more on a busy machine)
        if len(times) == 4 and key not in q.active:
            break
        await asyncio.sleep(0.01)
    assert len(times) == 4
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert gaps[0] >= 0.05
    assert gaps[1] >= 0.1
    assert gaps[2] >= 0.2  # doubling
    assert key not in q.failures  # the success reset it
    q.add(key)  # fails again: back to the first delay
    await asyncio.sleep(0.02)
    assert q.failures[key] == 1
    assert q.backoff(key) == 0.1
    task.cancel()


async def test_resync_asks_for_a_pass_of_every_resource_each_period() -> None:
    from novacron_operator.handlers import resync

    class Cached:
        async def cached_list(self, kind: str, ns: str) -> list[dict[str, Any]]:
            return [{"metadata": {"name": f"{kind.lower()}-1"}}] if kind == "NovaCronRegion" else []

    seen: list[Key] = []

    async def reconcile(key: Key) -> Follow:
        seen.append(key)
        return []

    q = WorkQueue(reconcile, workers=1)
    q.enabled = True
    worker = asyncio.create_task(q.run())
    task = asyncio.create_task(resync(Cached(), q, ("ns",), 0.02))  # type: ignore[arg-type]
    await asyncio.sleep(0.15)
    task.cancel()
    worker.cancel()
    assert seen.count(Key("NovaCronRegion", "ns", "novacronregion-1")) >= 2
