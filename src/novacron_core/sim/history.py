"""Client-visible history: what was asked, when, and what came back (Jepsen's vocabulary).

``ok``: the operation took effect with this result. ``fail``: it certainly did not take
effect. ``info``: unknown (timed out, connection lost) — it may take effect at any time after
its invocation, so checkers treat it as still running forever.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class Op:
    id: int
    client: Any
    kind: str
    key: Any
    value: Any
    call: float
    ret: float = math.inf
    status: str | None = None  # "ok" | "fail" | "info" | None (still pending)
    result: Any = None

    def __repr__(self) -> str:
        ret = "∞" if self.ret == math.inf else f"{self.ret:.4f}"
        return (
            f"#{self.id} c{self.client} {self.kind}({self.key!r}, {self.value!r}) -> "
            f"{self.status}:{self.result!r} [{self.call:.4f}, {ret}]"
        )


@dataclass
class History:
    ops: list[Op] = field(default_factory=list)

    def invoke(self, client: Any, kind: str, key: Any, value: Any, now: float) -> Op:
        op = Op(len(self.ops), client, kind, key, value, now)
        self.ops.append(op)
        return op

    def ok(self, op: Op, result: Any, now: float) -> None:
        self._finish(op, "ok", result, now)

    def fail(self, op: Op, now: float) -> None:
        self._finish(op, "fail", None, now)

    def info(self, op: Op, now: float) -> None:
        """Outcome unknown: the op may have taken effect, or may still."""
        if op.status is not None:
            raise ValueError(f"op {op.id} already completed as {op.status}")
        op.status = "info"
        op.ret = math.inf

    def _finish(self, op: Op, status: str, result: Any, now: float) -> None:
        if op.status is not None:
            raise ValueError(f"op {op.id} already completed as {op.status}")
        if now < op.call:
            raise ValueError(f"op {op.id} returns before it was invoked")
        op.status, op.result, op.ret = status, result, now

    def close(self) -> None:
        """Mark every op still pending as ``info`` (end of a run)."""
        for op in self.ops:
            if op.status is None:
                op.status = "info"
                op.ret = math.inf

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for op in self.ops:
            out[str(op.status)] = out.get(str(op.status), 0) + 1
        return out
