"""The process's heap and the cyclic garbage collector: what every long-running command
(node, gateway) shares, so a collection does not stall its event loop unseen."""

from __future__ import annotations

import gc
import logging
import time
from typing import Any

log = logging.getLogger("novacron.heap")
_started: list[float] = []
_slow_s = [0.05]


def freeze_startup_heap() -> None:
    """Collect once, then move what is alive now (modules, the app, recovered state) out of
    the collector's scans: it lives as long as the process, and every full collection
    walked it again (the node's ~75,000 start-up objects: up to 130 ms on the loop)."""
    gc.collect()
    gc.freeze()


def _time_gc(phase: str, info: dict[str, Any]) -> None:
    if phase == "start":
        _started[:] = [time.perf_counter()]
    elif _started:
        took = time.perf_counter() - _started.pop()
        if took > _slow_s[0]:
            log.warning("slow gc: %.0f ms (generation %d)", took * 1000, info["generation"])


def log_slow_gc(slower_than_s: float) -> None:
    """Log every collection longer than ``slower_than_s`` (once per process, however many
    callers ask): a full collection walks every live object, and a big state makes it long."""
    _slow_s[0] = slower_than_s
    if _time_gc not in gc.callbacks:
        gc.callbacks.append(_time_gc)
