"""Which restore points a retention policy keeps (sans-IO: ``now`` is an argument).

The policy keeps the newest base (full or incremental backup) in each hour of the last 7 days,
each day of the last 30, each week of the last 90 and each calendar month of the last year
(UTC, by the whole second), and always the newest base of all. Whatever a kept incremental
builds on is kept too, and the shipped log from the oldest kept base on (the log before it
restores nothing).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from novacron_core.dr.catalog import INCR, LOG, ObjectMeta, bases

HOUR, DAY, WEEK = 3600, 86400, 7 * 86400


def _month(t: float) -> int:
    d = datetime.fromtimestamp(int(t), UTC)
    return d.year * 12 + d.month


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    window: float  # seconds back from now it applies to
    bucket: Callable[[float], int]


@dataclass(frozen=True, slots=True)
class Policy:
    hourly_days: int = 7
    daily_days: int = 30
    weekly_days: int = 90
    monthly_days: int = 365

    def rules(self) -> list[Rule]:
        return [
            Rule("hourly", self.hourly_days * DAY, lambda t: int(t) // HOUR),
            Rule("daily", self.daily_days * DAY, lambda t: int(t) // DAY),
            # weeks start on Monday (the epoch was a Thursday: shift by 3 days)
            Rule("weekly", self.weekly_days * DAY, lambda t: (int(t) + 3 * DAY) // WEEK),
            Rule("monthly", self.monthly_days * DAY, _month),
        ]


def keep_points(points: dict[str, float], now: float, policy: Policy) -> set[str]:
    """Of ``points`` (name -> time), the names the policy keeps at ``now``."""
    if not points:
        return set()
    keep = {max(points, key=lambda n: (points[n], n))}
    for rule in policy.rules():
        newest: dict[int, str] = {}
        for name, t in points.items():
            if now - rule.window < t <= now:
                b = rule.bucket(t)
                cur = newest.get(b)
                if cur is None or (t, name) > (points[cur], cur):
                    newest[b] = name
        keep |= set(newest.values())
    return keep


def expired(objects: list[ObjectMeta], now: float, policy: Policy) -> list[ObjectMeta]:
    """The objects to delete: bases the policy drops (unless a kept one builds on them), and
    log chunks wholly before the oldest kept base."""
    chains = bases(objects)
    times = {str(i): chain[-1].shipped_at for i, chain in chains.items()}
    kept_idx = {int(n) for n in keep_points(times, now, policy)}
    needed = {o.key for i in kept_idx for o in chains[i]}
    oldest = min(kept_idx, default=0)
    out = []
    for o in objects:
        if o.kind == LOG:
            if kept_idx and o.last <= oldest:
                out.append(o)
        elif o.key not in needed and (kept_idx or o.kind == INCR):
            out.append(o)
    return out
