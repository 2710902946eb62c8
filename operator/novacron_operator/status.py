"""Status as the API conventions want it: observedGeneration plus Ready/Progressing/Degraded
conditions whose lastTransitionTime moves only when their status does. Pure functions."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

Obj = dict[str, Any]


@dataclass(frozen=True)
class Group:
    """Whether the operator reaches the region's nodes' admin API (the GroupReachable
    condition; absent when the operator does not manage members)."""

    reachable: bool
    reason: str
    message: str


@dataclass(frozen=True)
class Health:
    ready: bool
    progressing: bool
    degraded: bool
    reason: str
    message: str
    group: Group | None = None


def now_rfc3339() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def conditions(old: list[Obj], health: Health, generation: int, now: str) -> list[Obj]:
    wanted = {
        "Ready": health.ready,
        "Progressing": health.progressing,
        "Degraded": health.degraded,
    }
    previous = {c.get("type"): c for c in old}
    out: list[Obj] = []
    for type_, value in wanted.items():
        status = "True" if value else "False"
        prev = previous.get(type_, {})
        same = prev.get("status") == status
        out.append(
            {
                "type": type_,
                "status": status,
                "reason": health.reason,
                "message": health.message,
                "lastTransitionTime": prev.get("lastTransitionTime", now) if same else now,
                "observedGeneration": generation,
            }
        )
    if health.group is not None:
        g = health.group
        status = "True" if g.reachable else "False"
        prev = previous.get("GroupReachable", {})
        same = prev.get("status") == status
        out.append(
            {
                "type": "GroupReachable",
                "status": status,
                "reason": g.reason,
                "message": g.message,
                "lastTransitionTime": prev.get("lastTransitionTime", now) if same else now,
                "observedGeneration": generation,
            }
        )
    return out


def ready_of(obj: Obj | None) -> bool | None:
    for c in ((obj or {}).get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return bool(c.get("status") == "True")
    return None


def workload_health(
    want_replicas: int, sts: Obj | None, ds: Obj | None, deploy: Obj | None, agent: bool
) -> Health:
    """Region health from its real children (kwok or kubelet reports their pods)."""
    if sts is None or deploy is None or (agent and ds is None):
        return Health(False, True, False, "Creating", "children are being created")
    s = sts.get("status") or {}
    lagging: list[str] = []
    if s.get("observedGeneration", 0) < sts["metadata"].get("generation", 0):
        lagging.append("StatefulSet not yet observed")
    ready, updated = s.get("readyReplicas", 0), s.get("updatedReplicas", 0)
    if ready < want_replicas:
        lagging.append(f"{ready}/{want_replicas} nodes ready")
    # not currentRevision: under OnDelete the StatefulSet controller never advances it
    if updated < want_replicas:
        lagging.append(f"{updated}/{want_replicas} nodes updated")
    if agent and ds is not None:
        d = ds.get("status") or {}
        want, have = d.get("desiredNumberScheduled", 0), d.get("numberReady", 0)
        if want == 0 or have < want:
            lagging.append(f"{have}/{want} agents ready")
    dep = deploy.get("status") or {}
    want_gw = (deploy.get("spec") or {}).get("replicas", 1)
    if dep.get("availableReplicas", 0) < want_gw:
        lagging.append(f"{dep.get('availableReplicas', 0)}/{want_gw} gateways available")
    if not lagging:
        return Health(True, False, False, "AllReady", "all nodes, agents and gateways ready")
    # quorum lost while the group exists is degraded, not merely progressing
    degraded = want_replicas > 0 and ready < want_replicas // 2 + 1 and s.get("replicas", 0) > 0
    reason = "QuorumAtRisk" if degraded else "RollingOut"
    return Health(False, True, degraded, reason, "; ".join(lagging))
