"""Status conditions derive from children, say distinct things, keep lastTransitionTime
stable, and turn into Events: a Warning for each failure, Normal when Ready."""

from __future__ import annotations

from typing import Any

from novacron_operator.admin import ClusterInfo
from novacron_operator.regions import region_health
from novacron_operator.schema import Condition
from novacron_operator.sequencer import Step, World
from novacron_operator.status import (
    Health,
    conditions,
    events,
    no,
    progressing_health,
    ready_health,
    workload_health,
)


def sts(ready: int, replicas: int = 3, gen: int = 1, observed: int = 1) -> dict[str, Any]:
    return {
        "metadata": {"generation": gen},
        "status": {
            "observedGeneration": observed,
            "replicas": replicas,
            "readyReplicas": ready,
            "updatedReplicas": replicas,
            "currentRevision": "a",
            "updateRevision": "a",
        },
    }


DS = {"status": {"desiredNumberScheduled": 2, "numberReady": 2}}
DEPLOY = {"spec": {"replicas": 1}, "status": {"availableReplicas": 1}}


def flags(h: Health) -> tuple[bool, bool, bool]:
    return (h.ready.status, h.progressing.status, h.degraded.status)


def test_all_children_ready_gives_ready() -> None:
    assert flags(workload_health(3, sts(3))) == (True, False, False)
    assert flags(workload_health(3, sts(3), DS, DEPLOY, agent=True, gateway=True)) == (
        True,
        False,
        False,
    )


def test_missing_children_are_progressing_not_ready() -> None:
    h = workload_health(3, None)
    assert flags(h) == (False, True, False)
    assert h.progressing.reason == "Creating"


def test_losing_majority_is_degraded_and_each_condition_says_its_own_thing() -> None:
    h = workload_health(3, sts(1))
    assert flags(h) == (False, True, True)
    assert h.degraded.reason == "QuorumAtRisk"
    assert "2 needed for a majority" in h.degraded.message
    assert "1/3 nodes ready" in h.progressing.message
    assert len({h.ready.message, h.progressing.message, h.degraded.message}) == 3


def test_pending_revision_is_progressing() -> None:
    s = sts(3)
    s["status"]["updateRevision"] = "b"
    s["status"]["updatedReplicas"] = 2
    assert flags(workload_health(3, s)) == (False, True, False)


def stored(conds: list[Condition]) -> list[dict[str, Any]]:
    """The conditions as the API server stores them (what the next pass reads)."""
    return [c.model_dump(by_alias=True, mode="json") for c in conds]


def test_transition_time_moves_only_on_status_change() -> None:
    ready = ready_health("NodesReady", "ok")
    first = stored(conditions([], ready, 1, "t1"))
    again = stored(conditions(first, ready, 2, "t2"))
    assert [c["lastTransitionTime"] for c in again] == ["t1", "t1", "t1"]
    assert all(c["observedGeneration"] == 2 for c in again)
    flipped = stored(conditions(again, progressing_health("RollingOut", "x"), 3, "t3"))
    by_type = {c["type"]: c for c in flipped}
    assert by_type["Ready"]["lastTransitionTime"] == "t3"
    assert by_type["Degraded"]["lastTransitionTime"] == "t1"


def test_failures_post_warning_events_once_and_ready_a_normal_one() -> None:
    new = stored(
        conditions([], progressing_health("Creating", "children are being created"), 1, "t")
    )
    # a brand-new resource that is not Ready yet is no failure
    assert events([], progressing_health("Creating", "x")) == []
    ready = ready_health("Serving", "leader r-0")
    assert events(new, ready) == [("Normal", "Serving", "leader r-0")]
    served = stored(conditions(new, ready, 1, "t"))
    broken = ready_health("Serving", "x").degrade("ChildApplyFailed", "StatefulSet r: 422")
    posted = events(served, broken)
    assert [(t, r) for t, r, _ in posted] == [
        ("Warning", "ChildApplyFailed"),
        ("Warning", "ChildApplyFailed"),
    ]
    assert "Degraded=True: StatefulSet r: 422" in [m for _, _, m in posted]
    # the same failure on the next pass posts nothing again
    assert events(stored(conditions(served, broken, 1, "t")), broken) == []
    # a rollout (not Ready, Progressing, nothing degraded) is no failure either
    assert events(served, progressing_health("RollingOut", "1/3 nodes updated")) == []
    # a failure reported by its own condition on a brand-new resource is posted at once
    unsupported = progressing_health("Creating", "x").with_extra(
        no("ProtocolSupported", "NotImplemented", "spec.protocol epaxos")
    )
    assert events([], unsupported) == [
        ("Warning", "NotImplemented", "ProtocolSupported=False: spec.protocol epaxos")
    ]


LEAD = ClusterInfo("r-0", "leader", 2, "r-0", 9, 9, ("r-0",), ())


def by_type(h: Health) -> dict[str, Any]:
    return {c.type: c for c in h.all()}


def test_ready_means_the_group_answers_with_a_leader() -> None:
    pods_ready = ready_health("NodesReady", "1/1 nodes ready and updated")
    w = World("r", 1, 1, nodes={"r-0": LEAD})
    done = region_health(pods_ready, Step(1, 0, done=True, leader=LEAD), w)
    assert (done.ready.status, done.ready.reason) == (True, "Serving")
    assert "leader r-0" in done.ready.message
    assert by_type(done)["GroupReachable"].status
    # ready pods, but no node answers the operator: not Ready, and GroupReachable says why
    blind = region_health(pods_ready, Step(1, 0, waiting="x"), World("r", 1, 1))
    assert (blind.ready.status, blind.ready.reason) == (False, "GroupUnreachable")
    assert by_type(blind)["GroupReachable"].reason == "GroupUnreachable"
    follower = {"r-0": ClusterInfo("r-0", "follower", 2, None, 9, 9, ("r-0",), ())}
    lost = region_health(pods_ready, Step(1, 0, waiting="x"), World("r", 1, 1, nodes=follower))
    assert flags(lost) == (False, False, True)
    assert lost.degraded.reason == "NoLeader"
    busy = region_health(pods_ready, Step(3, 0, waiting="promote r-1", leader=LEAD), w)
    assert (busy.progressing.reason, busy.progressing.message) == ("Reconfiguring", "promote r-1")
    assert not busy.ready.status
    # without member management the pods' readiness is all there is
    assert region_health(pods_ready, Step(1, 0), World("r", 1, 1, manage=False)) == pods_ready
    types = [c.type for c in conditions([], blind, 1, "t")]
    assert types == ["Ready", "Progressing", "Degraded", "GroupReachable"]


def test_a_leaderless_group_is_ready_when_every_node_answers_not_when_one_leads() -> None:
    pods_ready = ready_health("NodesReady", "3/3 nodes ready and updated")
    vs = ("r-0", "r-1", "r-2")
    nodes = {m: ClusterInfo(m, "replica", 0, None, 9, 9, vs, (), protocol="epaxos") for m in vs}
    w = World("r", 3, 3, nodes=nodes)
    done = region_health(pods_ready, Step(3, 0, done=True, leaderless=True), w)
    assert (done.ready.status, done.ready.reason) == (True, "Serving")
    assert "epaxos: 3 nodes answer, every one takes writes" in done.ready.message
    assert not done.degraded.status  # no NoLeader for a protocol that has none
    resize = Step(3, 0, waiting="epaxos has no membership change", leaderless=True)
    held = region_health(pods_ready, resize, w)
    assert (held.ready.status, held.progressing.reason) == (False, "Reconfiguring")
    assert "no membership change" in held.progressing.message
