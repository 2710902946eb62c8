"""Status conditions derive from children and keep lastTransitionTime stable."""

from __future__ import annotations

from typing import Any

from novacron_operator.status import Health, conditions, workload_health


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


def test_all_children_ready_gives_ready() -> None:
    h = workload_health(3, sts(3), DS, DEPLOY, agent=True)
    assert (h.ready, h.progressing, h.degraded) == (True, False, False)


def test_missing_children_are_progressing_not_ready() -> None:
    h = workload_health(3, None, DS, DEPLOY, agent=True)
    assert (h.ready, h.progressing, h.reason) == (False, True, "Creating")


def test_losing_majority_is_degraded() -> None:
    h = workload_health(3, sts(1), DS, DEPLOY, agent=True)
    assert h.degraded
    assert "1/3 nodes ready" in h.message


def test_pending_revision_is_progressing() -> None:
    s = sts(3)
    s["status"]["updateRevision"] = "b"
    s["status"]["updatedReplicas"] = 2
    h = workload_health(3, s, DS, DEPLOY, agent=True)
    assert (h.ready, h.progressing) == (False, True)


def test_transition_time_moves_only_on_status_change() -> None:
    ready = Health(True, False, False, "AllReady", "ok")
    first = conditions([], ready, 1, "t1")
    again = conditions(first, ready, 2, "t2")
    assert [c["lastTransitionTime"] for c in again] == ["t1", "t1", "t1"]
    assert all(c["observedGeneration"] == 2 for c in again)
    flipped = conditions(again, Health(False, True, False, "RollingOut", "x"), 3, "t3")
    by_type = {c["type"]: c for c in flipped}
    assert by_type["Ready"]["lastTransitionTime"] == "t3"
    assert by_type["Degraded"]["lastTransitionTime"] == "t1"


def test_region_health_needs_an_answering_group_with_a_leader_and_the_right_members() -> None:
    from novacron_operator.admin import ClusterInfo
    from novacron_operator.reconcile import region_health
    from novacron_operator.sequencer import Step, World

    ok = Health(True, False, False, "AllReady", "all ready")
    rolling = Health(False, True, False, "RollingOut", "1/3 nodes ready")
    lead = ClusterInfo("r-0", "leader", 2, "r-0", 9, 9, ("r-0",), ())
    w = World("r", 1, 1, nodes={"r-0": lead})
    done = region_health(ok, Step(1, 0, done=True, leader=lead), w)
    assert done.ready
    assert done.group is not None
    assert done.group.reachable
    # unreachable: the pods' verdict stands, GroupReachable=False says the operator is blind
    unreachable = region_health(ok, Step(1, 0, waiting="x"), World("r", 1, 1))
    assert unreachable.ready
    assert unreachable.group is not None
    assert (unreachable.group.reachable, unreachable.group.reason) == (False, "GroupUnreachable")
    no_leader = {"r-0": ClusterInfo("r-0", "follower", 2, None, 9, 9, ("r-0",), ())}
    lost = region_health(ok, Step(1, 0, waiting="x"), World("r", 1, 1, nodes=no_leader))
    assert (lost.reason, lost.ready, lost.degraded) == ("NoLeader", False, True)
    busy = region_health(ok, Step(3, 0, waiting="promote r-1", leader=lead), w)
    assert (busy.reason, busy.message, busy.ready) == ("Reconfiguring", "promote r-1", False)
    assert region_health(ok, Step(1, 0), World("r", 1, 1, manage=False)) == ok
    assert region_health(rolling, Step(1, 0), World("r", 1, 1, manage=False)) == rolling
    types = [c["type"] for c in conditions([], unreachable, 1, "t")]
    assert types == ["Ready", "Progressing", "Degraded", "GroupReachable"]
