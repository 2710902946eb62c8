"""The simulated network's fault knobs: loss, duplication, jitter, partitions."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class NetConfig:
    """Mutable at any virtual time (fault schedules change it while a run goes on).

    ``jitter`` stretches each message's one-way latency by a uniform factor in
    ``[1, 1 + jitter]``; different stretches are what reorder messages on one link.
    """

    drop_rate: float = 0.0
    dup_rate: float = 0.0
    jitter: float = 0.1
    # node -> group index; nodes in different groups cannot talk. Empty = fully connected.
    groups: dict[str, int] = field(default_factory=dict)
    # one-way blocks (src, dst): asymmetric partitions.
    blocked: set[tuple[str, str]] = field(default_factory=set)

    def cut(self, src: str, dst: str) -> bool:
        groups = self.groups
        if groups and groups.get(src, -1) != groups.get(dst, -1):
            return True
        return bool(self.blocked) and (src, dst) in self.blocked


@dataclass(slots=True)
class NetStats:
    messages_sent: int = 0
    messages_delivered: int = 0
    messages_dropped: int = 0
    messages_duplicated: int = 0
    bytes_sent: int = 0
