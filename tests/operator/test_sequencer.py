"""The day-2 sequencer, table-driven: every state of scale-up, scale-down and a rolling
change (including the ones an operator crash leaves behind) gives one safe next step."""

from __future__ import annotations

from dataclasses import replace

import pytest
from novacron_operator.admin import ClusterInfo
from novacron_operator.sequencer import (
    CATCH_UP_SLACK,
    Action,
    Pod,
    Step,
    World,
    leader_of,
    plan,
)

N = "r"


def n(i: int) -> str:
    return f"{N}-{i}"


def group(
    voters: range | list[int],
    learners: list[int] = (),  # type: ignore[assignment]
    leader: int = 0,
    commit: int = 50,
    lagging: tuple[int, ...] = (),
    joiners: tuple[int, ...] = (),
    down: tuple[int, ...] = (),
    term: int = 3,
) -> dict[str, ClusterInfo]:
    """Every node's answer: members know the leader; joiners answer but are no members."""
    vs, ls = tuple(sorted(n(i) for i in voters)), tuple(sorted(n(i) for i in learners))
    out = {}
    for i in [*voters, *learners]:
        if i in down:
            continue
        role = "leader" if i == leader else ("learner" if i in learners else "follower")
        applied = commit - CATCH_UP_SLACK - 1 if i in lagging else commit
        out[n(i)] = ClusterInfo(n(i), role, term, n(leader), commit, applied, vs, ls)
    for i in joiners:
        out[n(i)] = ClusterInfo(n(i), "follower", 0, None, 0, 0, (), ())
    return out


def pods(count: int, updated_from: int | None = None, unready: tuple[int, ...] = ()) -> dict:
    """Pods 0..count-1; those with ordinal >= updated_from run the newest template."""
    top = count if updated_from is None else updated_from
    return {i: Pod(i, i not in unready, i >= top) for i in range(count)}


def world(**kw: object) -> World:
    base: dict[str, object] = {
        "name": N,
        "desired": 3,
        "sts_replicas": 3,
        "pods": pods(3, 0),
        "nodes": group(range(3)),
    }
    return World(**(base | kw))  # type: ignore[arg-type]


def expect(
    replicas: int,
    partition: int = 0,
    action: Action | None = None,
    done: bool = False,
    released: str | None = None,
) -> tuple[int, int, Action | None, bool, str | None]:
    return (replicas, partition, action, done, released)


def got(step: Step) -> tuple[int, int, Action | None, bool, str | None]:
    return (step.replicas, step.partition, step.action, step.done, step.released)


CASES: dict[str, tuple[World, tuple[int, int, Action | None, bool, str | None]]] = {
    # ---- creation and steady state
    "new region: StatefulSet at desired": (world(sts_replicas=None, pods={}, nodes={}), expect(3)),
    "steady: done": (world(), expect(3, done=True)),
    "no node answers: hold": (world(nodes={}), expect(3)),
    "no leader yet: hold": (
        world(nodes={k: replace(v, role="follower") for k, v in group(range(3)).items()}),
        expect(3),
    ),
    # ---- scale-up 3 -> 5
    "scale-up: grow the StatefulSet first": (
        world(desired=5, pods=pods(3, 0)),
        expect(5),
    ),
    "scale-up, group unreachable: still grow": (world(desired=5, nodes={}), expect(5)),
    "scale-up: new pod's node not answering yet": (
        world(desired=5, sts_replicas=5, pods=pods(5, 0)),
        expect(5),
    ),
    "scale-up: add the lowest new ordinal as learner": (
        world(desired=5, sts_replicas=5, pods=pods(5, 0), nodes=group(range(3), joiners=(3, 4))),
        expect(5, action=Action("add_learner", n(3))),
    ),
    "scale-up: learner lagging: wait (crash after add resumes here)": (
        world(
            desired=5,
            sts_replicas=5,
            pods=pods(5, 0),
            nodes=group(range(3), learners=[3], lagging=(3,), joiners=(4,)),
        ),
        expect(5),
    ),
    "scale-up: learner caught up: promote": (
        world(desired=5, sts_replicas=5, pods=pods(5, 0), nodes=group(range(3), [3], joiners=(4,))),
        expect(5, action=Action("promote", n(3))),
    ),
    "scale-up: learner down: wait, never promote blind": (
        world(desired=5, sts_replicas=5, pods=pods(5, 0), nodes=group(range(3), [3], down=(3,))),
        expect(5),
    ),
    "scale-up: next joiner after a promotion": (
        world(desired=5, sts_replicas=5, pods=pods(5, 0), nodes=group(range(4), joiners=(4,))),
        expect(5, action=Action("add_learner", n(4))),
    ),
    "scale-up: all voters: done": (
        world(desired=5, sts_replicas=5, pods=pods(5, 0), nodes=group(range(5))),
        expect(5, done=True),
    ),
    "repair: a lower pod lost its membership is re-added": (
        world(nodes=group([0, 2], joiners=(1,))),
        expect(3, action=Action("add_learner", n(1))),
    ),
    # ---- scale-down 5 -> 3
    "scale-down: remove the highest ordinal first, StatefulSet kept": (
        world(desired=3, sts_replicas=5, pods=pods(5, 0), nodes=group(range(5))),
        expect(5, action=Action("remove", n(4))),
    ),
    "scale-down: after removing 4 (crash point): shrink past it, remove 3": (
        world(desired=3, sts_replicas=5, pods=pods(5, 0), nodes=group(range(4))),
        expect(4, action=Action("remove", n(3))),
    ),
    "scale-down: removed ones still running (no longer members): shrink": (
        world(desired=3, sts_replicas=5, pods=pods(5, 0), nodes=group(range(3))),
        expect(3),
    ),
    "scale-down: a learner left from an interrupted scale-up is removed too": (
        world(desired=3, sts_replicas=5, pods=pods(5, 0), nodes=group(range(3), [3])),
        expect(4, action=Action("remove", n(3))),
    ),
    "scale-down: the leader is going: transfer to the lowest caught-up voter": (
        world(desired=3, sts_replicas=5, pods=pods(5, 0), nodes=group(range(5), leader=4)),
        expect(5, action=Action("transfer", n(0))),
    ),
    "scale-down: transfer skips a lagging voter": (
        world(
            desired=3,
            sts_replicas=5,
            pods=pods(5, 0),
            nodes=group(range(5), leader=3, lagging=(0,)),
        ),
        expect(5, action=Action("transfer", n(1))),
    ),
    "scale-down 3 -> 1 with the leader on 1": (
        world(desired=1, nodes=group(range(3), leader=1)),
        expect(3, action=Action("transfer", n(0))),
    ),
    "scale-down: StatefulSet already smaller than a member (hand edit): never regrow": (
        world(desired=3, sts_replicas=3, nodes=group(range(5), down=(3, 4))),
        expect(3, action=Action("remove", n(4))),
    ),
    # ---- rolling change, 3 pods, new template
    "roll: new template is applied held at the current size": (
        world(template_current=False, partition=0, pods=pods(3)),
        expect(3, partition=3),
    ),
    "roll: held, leader elsewhere: release the highest ordinal": (
        world(partition=3, pods=pods(3)),
        expect(3, partition=2, released=n(2)),
    ),
    "roll: released pod not yet replaced: wait": (
        world(partition=2, pods=pods(3)),
        expect(3, partition=2),
    ),
    "roll: released pod replaced but not ready: wait": (
        world(partition=2, pods=pods(3, 2, unready=(2,))),
        expect(3, partition=2),
    ),
    "roll: replaced node still catching up: wait": (
        world(partition=2, pods=pods(3, 2), nodes=group(range(3), lagging=(2,))),
        expect(3, partition=2),
    ),
    "roll: the next pod leads: transfer to an updated voter first": (
        world(partition=2, pods=pods(3, 2), nodes=group(range(3), leader=1)),
        expect(3, partition=2, action=Action("transfer", n(2))),
    ),
    "roll: the highest pod leads: transfer to the lowest (released last)": (
        world(partition=3, pods=pods(3), nodes=group(range(3), leader=2)),
        expect(3, partition=3, action=Action("transfer", n(0))),
    ),
    "roll: after the transfer (crash point): release": (
        world(partition=2, pods=pods(3, 2), nodes=group(range(3), leader=2)),
        expect(3, partition=1, released=n(1)),
    ),
    "roll: last ordinal": (
        world(partition=1, pods=pods(3, 1), nodes=group(range(3), leader=2)),
        expect(3, 0, released=n(0)),
    ),
    "roll: finished": (world(partition=0, pods=pods(3, 0)), expect(3, 0, done=True)),
    "roll: StatefulSet status stale: wait": (
        world(partition=3, pods=pods(3), observed=False),
        expect(3, partition=3),
    ),
    "roll: a pod already on the new template is released without replacing": (
        world(
            partition=3,
            pods={0: Pod(0, True, False), 1: Pod(1, True, False), 2: Pod(2, True, True)},
        ),
        expect(3, partition=2),
    ),
    "roll waits for membership: a learner is promoted before any release": (
        world(partition=3, pods=pods(3), nodes=group(range(2), [2])),
        expect(3, partition=3, action=Action("promote", n(2))),
    ),
    "roll: single replica has nobody to transfer to: release": (
        world(desired=1, sts_replicas=1, partition=1, pods=pods(1), nodes=group(range(1))),
        expect(1, 0, released=n(0)),
    ),
    "roll: a voter down: hold every release": (
        world(partition=3, pods=pods(3), nodes=group(range(3), down=(1,))),
        expect(3, partition=3),
    ),
    # ---- without the admin API (pods only)
    "pods only: scale straight to desired": (
        world(desired=5, manage=False, nodes={}),
        expect(5),
    ),
    "pods only: release without transfers": (
        world(partition=2, pods=pods(3, 2), manage=False, nodes={}),
        expect(3, partition=1, released=n(1)),
    ),
    "pods only: shrink at once": (
        world(desired=1, sts_replicas=3, partition=0, pods=pods(3, 0), manage=False, nodes={}),
        expect(1),
    ),
}


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_next_step(case: str) -> None:
    w, want = CASES[case]
    step = plan(w)
    assert got(step) == want, step.waiting
    if not step.done and step.action is None and step.released is None:
        assert step.waiting, "a step that does nothing says what it waits for"


def test_leader_is_the_highest_term_claimant() -> None:
    nodes = group(range(3), leader=0, term=3)
    stale = replace(nodes[n(0)], term=2)
    fresh = ClusterInfo(n(1), "leader", 4, n(1), 60, 60, nodes[n(0)].voters, ())
    assert leader_of({n(0): stale, n(1): fresh}) == fresh
    assert leader_of({}) is None


def simulate(w: World, steps: int = 60) -> tuple[World, list[str]]:
    """Drive a toy group and StatefulSet with the plan until done: what executing each
    step (and the controller/kubelet reacting) would do, to check whole sequences."""
    log: list[str] = []
    for _ in range(steps):
        s = plan(w)
        if s.done:
            return w, log
        leader = leader_of(w.nodes)
        voters = set(leader.voters) if leader else set()
        learners = set(leader.learners) if leader else set()
        lead = leader.node if leader else None
        if s.action:
            log.append(str(s.action))
            a = s.action
            if a.kind == "add_learner":
                learners.add(a.node)
            elif a.kind == "promote":
                learners.discard(a.node)
                voters.add(a.node)
            elif a.kind == "remove":
                assert a.node != lead, "never remove the leader"
                voters.discard(a.node)
                learners.discard(a.node)
                assert len(voters) >= 1
            elif a.kind == "transfer":
                lead = a.node
        if s.released:
            log.append(f"release {s.released}")
            assert s.released != lead, "a leading pod is never released"
        # the StatefulSet controller and kubelet: pods follow replicas and partition
        new_pods = {}
        for i in range(s.replicas):
            old = w.pods.get(i)
            new_pods[i] = Pod(i, True, i >= s.partition if old is None else old.updated)
            if old is not None and i >= s.partition and not old.updated:
                new_pods[i] = Pod(i, True, True)  # replaced with the new template
        for i in w.pods:
            if i >= s.replicas:
                assert n(i) not in voters | learners, f"{n(i)}'s pod went while a member"
        assert lead in voters
        member_ids = sorted(voters, key=lambda v: int(v.rsplit("-", 1)[1]))
        nodes = group(
            [int(v.rsplit("-", 1)[1]) for v in member_ids],
            [int(v.rsplit("-", 1)[1]) for v in learners],
            leader=int(lead.rsplit("-", 1)[1]),
            joiners=tuple(i for i in new_pods if n(i) not in voters | learners),
        )
        w = replace(
            w, sts_replicas=s.replicas, partition=s.partition, template_current=True,
            pods=new_pods, nodes=nodes,
        )  # fmt: skip
    raise AssertionError(f"no convergence: {log}")


def test_whole_scale_up_is_learner_then_voter_one_at_a_time() -> None:
    final, log = simulate(world(desired=5))
    assert log == [
        f"add_learner {n(3)}",
        f"promote {n(3)}",
        f"add_learner {n(4)}",
        f"promote {n(4)}",
    ]
    assert leader_of(final.nodes).voters == tuple(n(i) for i in range(5))  # type: ignore[union-attr]


def test_whole_scale_down_moves_leadership_then_removes_highest_first() -> None:
    w = world(desired=3, sts_replicas=5, pods=pods(5, 0), nodes=group(range(5), leader=4))
    final, log = simulate(w)
    assert log == [f"transfer {n(0)}", f"remove {n(4)}", f"remove {n(3)}"]
    assert final.sts_replicas == 3


@pytest.mark.parametrize("leader", [0, 1, 2])
def test_whole_rolling_change_never_releases_the_leader(leader: int) -> None:
    w = world(template_current=False, pods=pods(3), nodes=group(range(3), leader=leader))
    final, log = simulate(w)
    released = [e.split()[1] for e in log if e.startswith("release")]
    assert released == [n(2), n(1), n(0)]
    assert sum(e.startswith("transfer") for e in log) <= 2
    assert all(p.updated for p in final.pods.values())


def _lost(nodes: dict[str, ClusterInfo], i: int) -> dict[str, ClusterInfo]:
    """Node ``i`` restarted on an empty data dir with initial-cluster-state=existing."""
    return {**nodes, n(i): replace(nodes[n(i)], rejoining=True)}


def test_member_replace_of_a_node_that_lost_its_state() -> None:
    """A voter reporting ``rejoining`` is removed, re-added as a learner, and promoted only
    once it left ``rejoining`` (it applied the learner config) and caught up."""
    lost_pod = pods(3, 0, unready=(2,))  # a rejoining node is not ready
    # it still counts as a voter in the leader's config: remove it first (through the leader)
    s = plan(world(pods=lost_pod, nodes=_lost(group(range(3)), 2)))
    assert got(s) == expect(3, action=Action("remove", n(2))), s.waiting
    # removed; it answers (as a non-member, still rejoining): add it back as a learner
    s = plan(world(pods=lost_pod, nodes=_lost(group([0, 1], joiners=(2,)), 2)))
    assert got(s) == expect(3, action=Action("add_learner", n(2))), s.waiting
    # a learner that has not applied its re-adding yet says rejoining: never promote it
    s = plan(world(pods=lost_pod, nodes=_lost(group([0, 1], learners=[2]), 2)))
    assert got(s) == expect(3), s.waiting
    assert n(2) in s.waiting
    s = plan(world(pods=lost_pod, nodes=group([0, 1], learners=[2])))
    assert got(s) == expect(3, action=Action("promote", n(2))), s.waiting
    assert plan(world(nodes=group(range(3)))).done


def test_only_the_node_that_says_rejoining_is_replaced() -> None:
    """The node's own answer triggers the replace, which names that node and goes through
    the leader (a rejoining node never leads: it never campaigns)."""
    s = plan(world(nodes=_lost(group(range(3), leader=0), 1)))
    assert s.action == Action("remove", n(1))
    assert s.leader is not None
    assert s.leader.node == n(0)


def test_cluster_info_reads_rejoining() -> None:
    doc = {"id": "r-2", "role": "follower", "term": 3, "commit": 9, "voters": ["r-0"]}
    assert not ClusterInfo.from_json(doc).rejoining
    assert ClusterInfo.from_json({**doc, "rejoining": True}).rejoining


def leaderless(protocol: str, size: int = 3, down: tuple[int, ...] = ()) -> dict[str, ClusterInfo]:
    """A group of a protocol without membership change: epaxos answers with no leader,
    eventual with every node leading itself; both refuse member changes."""
    vs = tuple(n(i) for i in range(size))
    out = {}
    for i in range(size):
        if i in down:
            continue
        me = n(i)
        role, lead = ("replica", None) if protocol == "epaxos" else ("leader", me)
        out[me] = ClusterInfo(me, role, 0, lead, 9, 9, vs, (), protocol=protocol)
    return out


@pytest.mark.parametrize("protocol", ["epaxos", "eventual"])
def test_a_leaderless_group_is_served_and_rolled_without_a_leader_or_member_changes(
    protocol: str,
) -> None:
    steady = plan(world(nodes=leaderless(protocol)))
    assert (steady.done, steady.leaderless, steady.action, steady.leader) == (
        True,
        True,
        None,
        None,
    )
    # a new template: released one pod at a time, highest first, no transfer asked
    rolling = plan(world(nodes=leaderless(protocol), partition=3, pods=pods(3)))
    assert (rolling.partition, rolling.released, rolling.action) == (2, n(2), None)
    waiting = plan(world(nodes=leaderless(protocol), partition=2, pods=pods(3, 2, (2,))))
    assert "waiting for pod ordinals [2]" in waiting.waiting
    # a resize cannot be done: the group keeps its size and the step says why
    grow = plan(world(desired=5, nodes=leaderless(protocol)))
    assert (grow.replicas, grow.action, grow.done) == (3, None, False)
    assert f"{protocol} has no membership change" in grow.waiting
    assert "spec.replicas 5 is not applied" in grow.waiting
