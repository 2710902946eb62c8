"""asyncio helpers the runtime's long-lived loops share."""

from __future__ import annotations

import asyncio


async def wait_set(event: asyncio.Event, seconds: float | None) -> bool:
    """Wait until ``event`` is set or ``seconds`` pass (None: no limit); True when it was set.

    Not ``asyncio.wait_for(event.wait(), timeout)``: on Python 3.11 ``wait_for`` loses a
    cancellation that arrives while the event is being set (CPython gh-86296, fixed in 3.12
    by reimplementing it on ``asyncio.timeout``), and a ``while True`` loop around it then
    never stops. That is how a gateway could catch SIGTERM, drain and hang forever: closing
    its connections woke its timer loop in the same iteration that cancelled it.
    ``asyncio.timeout`` cancels the waiting task itself, so no cancellation is lost.
    """
    try:
        async with asyncio.timeout(seconds):
            await event.wait()
    except TimeoutError:
        return False
    return True
