"""Gossip convergence in the simulator: propagation times, messages and bytes per update.

No peer system runs here: the targets are the published Gossip Glomers 3d/3e thresholds
(median < 400 ms, max < 600 ms, < 20 messages per update at 100 ms links), printed beside
our figures (``propagation``: gossip rounds only). ``propagation_eager`` is the same run with
eager push, as federation replicas run: informational, n - 1 pushes per update by design.
"""

from __future__ import annotations

from typing import Any

from benchmarks.common import result
from benchmarks.sync_figures import gossip_figures


def _flat(prefix: str, d: dict[str, Any], out: dict[str, Any]) -> None:
    for k, v in d.items():
        if isinstance(v, dict):
            _flat(f"{prefix}{k}.", v, out)
        elif isinstance(v, int | float | str | bool) or v is None:
            out[f"{prefix}{k}"] = v


def run(quick: bool = False) -> dict[str, Any]:
    f = gossip_figures(quick)
    figures: dict[str, Any] = {}
    sections = ("propagation", "propagation_eager", "bytes", "bytes_with_per_key_vector_clocks")
    for section in sections:
        _flat(f"{section}.", f[section], figures)
    targets: dict[str, Any] = {}
    _flat("target.", f["targets"], targets)
    return result("gossip", figures, targets, {}, {"quick": quick})
