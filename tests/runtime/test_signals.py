"""Stop-signal wiring shared by node, gateway and agent."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading

import pytest

from novacron_core.runtime.signals import stop_on_signals


def test_sigterm_calls_stop() -> None:
    async def main() -> bool:
        stopped = asyncio.Event()
        assert stop_on_signals(asyncio.get_running_loop(), stopped.set)
        os.kill(os.getpid(), signal.SIGTERM)
        await asyncio.wait_for(stopped.wait(), 5)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        return stopped.is_set()

    assert asyncio.run(main())


def test_off_the_main_thread_it_says_so_instead_of_failing_silently(
    caplog: pytest.LogCaptureFixture,
) -> None:
    got: list[bool] = []

    def run() -> None:
        loop = asyncio.new_event_loop()
        try:
            got.append(stop_on_signals(loop, lambda: None))
        finally:
            loop.close()

    with caplog.at_level(logging.WARNING, logger="novacron.signals"):
        t = threading.Thread(target=run)
        t.start()
        t.join()
    assert got == [False]
    assert "no SIGTERM/SIGINT handlers" in caplog.text
