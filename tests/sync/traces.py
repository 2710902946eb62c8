"""Loading the real editing traces (see ``novacron_core.sync.traces``)."""

from __future__ import annotations

from novacron_core.sync.traces import load, traces_dir

TRACES = traces_dir()

__all__ = ["TRACES", "load"]
