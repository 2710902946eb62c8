"""``status.health`` of a NovaCronRegion: the region's health score and SLO burn rates as
its nodes serve them (``GET /v1/observe/health``), the leader's view first.

Read at most every :data:`REFRESH_S` seconds: every status patch is a watch event that
asks for another pass, so a value re-read on every pass (burn rates move with every
request) would keep the region reconciling without pause. The pass that reads it asks for
the next one ``REFRESH_S`` later; a region none of whose nodes answers has no
``status.health`` (a stale score would claim a health nobody measured).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from novacron_operator.admin import NodeClients

REFRESH_S = 15.0


def _age_s(observed_at: Any, now: dt.datetime) -> float | None:
    if not isinstance(observed_at, str):
        return None
    try:
        then = dt.datetime.fromisoformat(observed_at.replace("Z", "+00:00"))
    except ValueError:
        return None
    return (now - then).total_seconds()


async def read_region_health(
    nodes: NodeClients,
    namespace: str,
    service: str,
    pods: list[str],
    old: Any,
    now: dt.datetime,
) -> tuple[dict[str, Any] | None, float]:
    """(``status.health`` to write, seconds until it should be read again). ``pods``: the
    nodes to ask, in order (the leader first); ``old``: the status's current value."""
    age = _age_s(old.get("observedAt") if isinstance(old, dict) else None, now)
    if age is not None and 0 <= age < REFRESH_S:
        return old, REFRESH_S - age
    health = await nodes.health(namespace, service, pods) if pods else None
    if health is None:
        return None, REFRESH_S
    out = health.model_dump(by_alias=True, exclude_none=True)
    out["observedAt"] = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    return out, REFRESH_S
