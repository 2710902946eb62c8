"""Convergence checking for replicated state that is meant to agree once messages stop."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass
class ConvergenceResult:
    ok: bool
    groups: list[list[str]]  # replicas grouped by equal state
    explanation: str = ""

    def __bool__(self) -> bool:
        return self.ok


def check_convergence(
    states: Mapping[str, Any], view: Callable[[Any], Any] = lambda s: s
) -> ConvergenceResult:
    """All replicas' ``view(state)`` must be equal. Reports which replicas disagree."""
    groups: list[tuple[Any, list[str]]] = []
    for name in sorted(states):
        v = view(states[name])
        for value, members in groups:
            if value == v:
                members.append(name)
                break
        else:
            groups.append((v, [name]))
    if len(groups) <= 1:
        return ConvergenceResult(True, [m for _, m in groups])
    lines = [f"{len(groups)} distinct states among {len(states)} replicas:"]
    for value, members in groups:
        shown = repr(value)
        lines.append(f"  {members}: {shown[:300]}{'...' if len(shown) > 300 else ''}")
    return ConvergenceResult(False, [m for _, m in groups], "\n".join(lines))
