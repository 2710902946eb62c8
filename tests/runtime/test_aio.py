"""wait_set: the runtime's loops wait for an event with a limit and still stop when cancelled."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from novacron_core.runtime.aio import wait_set

ROOT = Path(__file__).resolve().parents[2]


async def test_answers_whether_the_event_was_set_in_time() -> None:
    ev = asyncio.Event()
    assert await wait_set(ev, 0.01) is False
    asyncio.get_running_loop().call_later(0.01, ev.set)
    assert await wait_set(ev, 5) is True
    assert await wait_set(ev, 0) is True  # already set: no wait at all


async def test_a_loop_cancelled_while_its_event_is_set_stops() -> None:
    # The gateway's hang: stop() closed connections (which woke its timer loop) and cancelled
    # that loop in the same iteration. With 3.11's wait_for the cancellation was lost and the
    # `while True` loop ran on; here it must end.
    rounds = 0

    async def loop(ev: asyncio.Event) -> None:
        nonlocal rounds
        while True:
            await wait_set(ev, 1.0)
            ev.clear()
            rounds += 1

    for _ in range(20):
        ev = asyncio.Event()
        task = asyncio.create_task(loop(ev))
        await asyncio.sleep(0)
        ev.set()
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=2)
        assert done, "the cancellation was lost: the loop runs on"
        assert task.cancelled()


def test_no_runtime_loop_waits_for_an_event_with_wait_for() -> None:
    # the pattern that loses cancellations on Python 3.11 (see wait_set)
    pattern = re.compile(r"wait_for\(\s*[\w.]+\.wait\(\)")
    offenders = [
        f"{p.relative_to(ROOT)}"
        for base in ("src", "operator")
        for p in (ROOT / base).rglob("*.py")
        if p.name != "aio.py" and pattern.search(p.read_text())
    ]
    assert offenders == [], (
        f"use runtime.aio.wait_set instead of wait_for(event.wait()): {offenders}"
    )
