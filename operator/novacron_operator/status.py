"""Status as the API conventions want it: observedGeneration plus conditions whose
lastTransitionTime moves only when their status does. Pure functions.

Each condition says its own thing, with its own reason and message:

- Ready: the resource does its job. For a region: every desired node is ready on the current
  template and (when the operator manages members) the group answers with a leader.
- Progressing: a change is being rolled out (created, scaled, rolled, reconfigured), and
  which; False once nothing is in flight.
- Degraded: something is wrong that waiting for a rollout will not fix (quorum at risk, an
  object the API server refuses, a duplicate region name...).

Further conditions report one concern each (GroupReachable, VolumesResized,
ProtocolSupported, ...). A condition turning bad posts a Warning Event (``events``), as
CloudNativePG does; Ready turning True posts a Normal one.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from novacron_operator.schema import Condition

Obj = dict[str, Any]

# conditions that are bad when True; every other non-neutral condition is bad when False
BAD_WHEN_TRUE = frozenset({"Degraded"})
NEUTRAL = frozenset({"Progressing"})


@dataclass(frozen=True)
class Cond:
    type: str
    status: bool
    reason: str
    message: str

    @property
    def bad(self) -> bool:
        if self.type in NEUTRAL:
            return False
        return self.status if self.type in BAD_WHEN_TRUE else not self.status


def ok(type_: str, reason: str, message: str) -> Cond:
    return Cond(type_, True, reason, message)


def no(type_: str, reason: str, message: str) -> Cond:
    return Cond(type_, False, reason, message)


STABLE = no("Progressing", "Stable", "no change in flight")
HEALTHY = no("Degraded", "Healthy", "no fault found")


@dataclass(frozen=True)
class Health:
    ready: Cond
    progressing: Cond = STABLE
    degraded: Cond = HEALTHY
    extra: tuple[Cond, ...] = field(default=())

    @property
    def is_ready(self) -> bool:
        return self.ready.status

    def all(self) -> list[Cond]:
        return [self.ready, self.progressing, self.degraded, *self.extra]

    def with_extra(self, *conds: Cond) -> Health:
        return replace(self, extra=(*self.extra, *conds))

    def degrade_only(self, reason: str, message: str) -> Health:
        return replace(self, degraded=Cond("Degraded", True, reason, message))

    def degrade(self, reason: str, message: str) -> Health:
        """A fault: Degraded=True and not Ready, with the fault as both's reason."""
        return replace(
            self,
            ready=no("Ready", reason, message),
            degraded=Cond("Degraded", True, reason, message),
        )


def ready_health(reason: str, message: str) -> Health:
    return Health(ok("Ready", reason, message))


def progressing_health(reason: str, message: str, ready_message: str = "") -> Health:
    return Health(
        no("Ready", reason, ready_message or message), Cond("Progressing", True, reason, message)
    )


def now_rfc3339() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def conditions(old: list[Obj], health: Health, generation: int, now: str) -> list[Condition]:
    """``health`` as the CRD's conditions, given the ones stored (``old``, as read)."""
    previous = {c.get("type"): c for c in old}
    out: list[Condition] = []
    for c in health.all():
        status: Literal["True", "False"] = "True" if c.status else "False"
        prev = previous.get(c.type, {})
        same = prev.get("status") == status
        out.append(
            Condition(
                type=c.type,
                status=status,
                reason=c.reason,
                message=c.message[:1000],
                last_transition_time=prev.get("lastTransitionTime", now) if same else now,
                observed_generation=generation,
            )
        )
    return out


def events(old: list[Obj], health: Health) -> list[tuple[str, str, str]]:
    """(type, reason, message) of the Events a status change posts: a Warning for each
    condition that turns bad, a Normal one when Ready turns True. Not Ready while a change
    rolls out and nothing is degraded (a brand-new resource, an image change) is no
    failure."""
    previous = {c.get("type"): c.get("status") for c in old}
    rolling = health.progressing.status and not health.degraded.status
    out: list[tuple[str, str, str]] = []
    for c in health.all():
        status = "True" if c.status else "False"
        was = previous.get(c.type)
        if was == status:
            continue
        if c.bad and not (c.type == "Ready" and (was is None or rolling)):
            out.append(("Warning", c.reason, f"{c.type}={status}: {c.message}"))
        elif c.type == "Ready" and c.status:
            out.append(("Normal", c.reason, c.message))
    return out


def ready_of(obj: Obj | None) -> bool | None:
    return condition_of(obj, "Ready")


def condition_of(obj: Obj | None, type_: str) -> bool | None:
    for c in ((obj or {}).get("status") or {}).get("conditions") or []:
        if c.get("type") == type_:
            return bool(c.get("status") == "True")
    return None


def workload_health(
    want_replicas: int,
    sts: Obj | None,
    ds: Obj | None = None,
    deploy: Obj | None = None,
    agent: bool = False,
    gateway: bool = False,
) -> Health:
    """Region health from its real children (kwok or kubelet reports their pods)."""
    if sts is None or (gateway and deploy is None) or (agent and ds is None):
        return progressing_health("Creating", "children are being created", "no node yet")
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
        # one per Kubernetes node the DaemonSet selects (none: AgentsPlaced says why)
        d = ds.get("status") or {}
        want, have = d.get("desiredNumberScheduled", 0), d.get("numberReady", 0)
        if d.get("observedGeneration", 0) < (ds.get("metadata") or {}).get("generation", 0):
            lagging.append("agent DaemonSet not yet observed")
        elif have < want:
            lagging.append(f"{have}/{want} agents ready")
        elif d.get("updatedNumberScheduled", want) < want:
            lagging.append(f"{d.get('updatedNumberScheduled', 0)}/{want} agents updated")
    if gateway and deploy is not None:
        dep = deploy.get("status") or {}
        want_gw = (deploy.get("spec") or {}).get("replicas", 1)
        if dep.get("observedGeneration", 0) < (deploy.get("metadata") or {}).get("generation", 0):
            lagging.append("gateway Deployment not yet observed")
        elif dep.get("availableReplicas", 0) < want_gw:
            lagging.append(f"{dep.get('availableReplicas', 0)}/{want_gw} gateways available")
        elif dep.get("updatedReplicas", want_gw) < want_gw:
            lagging.append(f"{dep.get('updatedReplicas', 0)}/{want_gw} gateways updated")
    if not lagging:
        return ready_health("NodesReady", f"{ready}/{want_replicas} nodes ready and updated")
    # quorum lost while the group exists is degraded, not merely progressing
    degraded = want_replicas > 0 and ready < want_replicas // 2 + 1 and s.get("replicas", 0) > 0
    health = progressing_health("RollingOut", "; ".join(lagging), f"{ready}/{want_replicas} ready")
    if degraded:
        quorum = want_replicas // 2 + 1
        msg = f"{ready} of {want_replicas} nodes ready, {quorum} needed for a majority"
        serving = no("Ready", "QuorumAtRisk", "too few nodes ready for the group to serve")
        return replace(health, ready=serving).degrade_only("QuorumAtRisk", msg)
    return health
