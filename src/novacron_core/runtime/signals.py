"""Stop on SIGTERM/SIGINT: the one place every long-running command installs its handlers."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable

log = logging.getLogger("novacron.signals")


def stop_on_signals(loop: asyncio.AbstractEventLoop, stop: Callable[[], None]) -> bool:
    """Call ``stop`` on SIGTERM or SIGINT. Where the loop cannot take signal handlers (not
    the main thread, or a platform without them) say so instead of failing silently: the
    process then stops only as its caller stops it. Returns whether they were installed."""
    try:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop)
    except (NotImplementedError, RuntimeError) as e:
        log.warning("no SIGTERM/SIGINT handlers (%s): stop this process from its caller", e)
        return False
    return True
