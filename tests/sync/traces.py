"""Loading the real editing traces (see ``benchmarks.editing_traces``)."""

from __future__ import annotations

from benchmarks.editing_traces import load, traces_dir

TRACES = traces_dir()

__all__ = ["TRACES", "load"]
