"""A gateway whose stop() hangs still ends: serve() says what is stuck and hands over to
``on_stuck`` (the CLI exits 1 at once) instead of outliving its supervisor."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from novacron_core.runtime.gateway import server
from novacron_core.runtime.gateway.config import load_config


async def test_a_stop_that_hangs_is_reported_and_handed_to_on_stuck(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def hang(self: Any) -> None:
        await asyncio.Event().wait()  # e.g. a task that never honours its cancellation

    async def started(self: Any) -> None:
        return None

    monkeypatch.setattr(server.Gateway, "start", started)
    monkeypatch.setattr(server.Gateway, "stop", hang)
    monkeypatch.setattr(server, "tune_gc", lambda: None)
    # SIGTERM at once
    monkeypatch.setattr(server, "stop_on_signals", lambda loop, stop: loop.call_soon(stop))
    monkeypatch.setattr(server, "STOP_GRACE_S", 0.1)
    cfg = load_config(
        None, None, (), ("r1=127.0.0.1:9",), listen="127.0.0.1:0", admin_listen=None,
        shutdown_timeout_s=0.1,
    )  # fmt: skip
    called: list[bool] = []
    caplog.set_level(logging.ERROR)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    with pytest.raises(server.StopStuck):
        await server.serve(cfg, on_stuck=lambda: called.append(True))
    assert called == [True]
    assert loop.time() - t0 < 5
    assert "gateway stop did not finish" in caplog.text
    assert "hang" in caplog.text  # names the stuck coroutine
    for t in asyncio.all_tasks():  # leave the loop clean for the next test
        if t is not asyncio.current_task():
            t.cancel()
