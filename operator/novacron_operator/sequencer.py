"""The day-2 sequencer: one safe next step for a region's Raft group, decided from what the
StatefulSet, its pods and the nodes' admin API say right now (pure, no I/O).

The reconciler applies the StatefulSet with the replicas/partition chosen here, performs
at most one membership action, and comes back. Nothing is remembered between passes, so
an operator that crashes anywhere resumes from the world as it finds it:

- scale-up: the StatefulSet grows; each new pod's node, once it answers, is added as a
  learner, and promoted to voter when it has caught up (lowest ordinal first);
- scale-down: leadership moves off the pods that are going, the highest ordinal is removed
  from the group, and only then does the StatefulSet shrink past it;
- rolling change: the StatefulSet's rollingUpdate partition holds every pod on its old
  template and is lowered one ordinal at a time (highest first) once the group is whole
  and caught up; a pod that leads is asked to transfer leadership before it is released.
- member replace: a voter whose node reports ``rejoining`` (it restarted on an empty data
  dir after the group formed, so it abstains from elections) is removed, then added back
  as a learner like a new pod, and promoted once it left ``rejoining`` and caught up.

A protocol without membership change or leader (epaxos, eventual: ``FIXED_MEMBERSHIP``)
keeps the members it was created with: its pods roll one at a time once all are ready,
and a different spec.replicas is not applied (the step says so and stays not done).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

from novacron_operator.admin import ClusterInfo

# a learner whose applied index is within this many entries of the leader's commit index
# is caught up (the node's own /readyz allows up to min(1000, snapshot interval))
CATCH_UP_SLACK = 100
# protocols whose nodes refuse membership changes (and have no leader to transfer)
FIXED_MEMBERSHIP = frozenset({"epaxos", "eventual"})

ActionKind = Literal["add_learner", "promote", "remove", "transfer"]


@dataclass(frozen=True)
class Action:
    kind: ActionKind
    node: str  # the member added/promoted/removed, or the transfer's target

    def __str__(self) -> str:
        return f"{self.kind} {self.node}"


@dataclass(frozen=True)
class Pod:
    ordinal: int
    ready: bool
    updated: bool  # at the StatefulSet's update revision


@dataclass(frozen=True)
class World:
    name: str  # the StatefulSet's name: pods and node ids are ``{name}-{ordinal}``
    desired: int  # spec.replicas
    sts_replicas: int | None  # the live StatefulSet's replicas; None: not created yet
    partition: int = 0  # the live rollingUpdate partition
    template_current: bool = True  # the live pod template is the one we would apply
    observed: bool = True  # the StatefulSet controller has seen its latest generation
    pods: dict[int, Pod] = field(default_factory=dict)
    nodes: dict[str, ClusterInfo] = field(default_factory=dict)  # answers, by node id
    manage: bool = True  # False: no admin API (pods only), e.g. kwok with no node inside


@dataclass(frozen=True)
class Step:
    replicas: int
    partition: int
    action: Action | None = None
    released: str | None = None  # the pod whose ordinal this step releases to the new template
    waiting: str = ""  # what the sequence waits for; "" with done
    done: bool = False
    leader: ClusterInfo | None = None
    # the group answered and runs a FIXED_MEMBERSHIP protocol: no leader is looked for
    leaderless: bool = False


def ordinal(name: str, node: str) -> int | None:
    prefix, _, num = node.rpartition("-")
    return int(num) if prefix == name and num.isdigit() else None


def leader_of(nodes: dict[str, ClusterInfo]) -> ClusterInfo | None:
    """The answer of a node that says it leads, the highest term winning (a deposed leader
    that has not heard of the new term yet may still say so)."""
    leaders = [n for n in nodes.values() if n.role == "leader" and n.leader in (None, n.node)]
    return max(leaders, key=lambda n: n.term, default=None)


def caught_up(node: ClusterInfo | None, leader: ClusterInfo) -> bool:
    return (
        node is not None
        and node.leader == leader.node
        and node.applied_index + CATCH_UP_SLACK >= leader.commit_index
    )


def plan(w: World) -> Step:
    if w.sts_replicas is None:  # a new region: its bootstrap members start together
        return Step(w.desired, 0, waiting="creating the StatefulSet")
    cur = w.sts_replicas
    # a new template is applied held: no pod moves to it until released below
    partition = w.partition if w.template_current else cur
    if not w.manage:
        return _roll(w, w.desired, partition, None)
    if w.nodes and all(n.protocol in FIXED_MEMBERSHIP for n in w.nodes.values()):
        return _fixed(w, partition)
    leader = leader_of(w.nodes)
    if leader is None:
        # growing is harmless (new pods wait as joiners); anything else needs the group
        what = "the group to answer" if not w.nodes else "a leader"
        return Step(max(cur, w.desired), partition, waiting=f"waiting for {what}")

    def step(replicas: int, action: Action | None = None, waiting: str = "") -> Step:
        return Step(replicas, partition, action, waiting=waiting or str(action), leader=leader)

    voters, learners = set(leader.voters), set(leader.learners)
    # scale-down: members at or above the desired size leave, highest first, then the
    # StatefulSet shrinks past them; leadership moves off them before anything else
    members = [(ordinal(w.name, m), m) for m in voters | learners]
    going = sorted((o, m) for o, m in members if o is not None and o >= w.desired)
    if going:
        top, node = going[-1]
        keep = max(w.desired, min(cur, top + 1))  # never shrink past a member, never grow
        if leader.node in {m for _, m in going}:
            target = _transfer_target(w, leader, exclude={m for _, m in going})
            if target is None:
                return step(keep, waiting="waiting for a caught-up voter to lead")
            return step(keep, Action("transfer", target))
        return step(keep, Action("remove", node))
    if cur > w.desired:
        return step(w.desired, waiting=f"shrinking the StatefulSet to {w.desired}")
    # scale-up (and repair): every pod below the desired size becomes a voter, in order
    for i in range(w.desired):
        node = f"{w.name}-{i}"
        info = w.nodes.get(node)
        rejoining = info is not None and info.rejoining
        if node in voters:
            if rejoining:  # lost its state: remove it, then re-add it (member replace)
                return step(w.desired, Action("remove", node))
            continue
        if node in learners:
            if caught_up(info, leader) and not rejoining:
                return step(w.desired, Action("promote", node))
            return step(w.desired, waiting=f"waiting for learner {node} to catch up")
        if i in w.pods and node in w.nodes:
            return step(w.desired, Action("add_learner", node))
        return step(w.desired, waiting=f"waiting for {node} to answer")
    return _roll(w, w.desired, partition, leader)


def _fixed(w: World, partition: int) -> Step:
    """A group that cannot change members: it keeps the size it reports (every node knows
    the fixed membership), and rolls like a group without an admin API."""
    protocol = next(iter(w.nodes.values())).protocol
    size = max(len(n.voters) for n in w.nodes.values()) or w.desired
    step = replace(_roll(w, size, partition, None), leaderless=True)
    if w.desired != size and step.done:
        why = (
            f"{protocol} has no membership change: the group keeps its {size} members "
            f"(spec.replicas {w.desired} is not applied)"
        )
        return replace(step, done=False, waiting=why)
    return step


def _transfer_target(
    w: World, leader: ClusterInfo, exclude: set[str], released_from: int | None = None
) -> str | None:
    """A caught-up voter to lead next: during a rollout one already released to the new
    template (it will not be replaced again), else the lowest ordinal (released last)."""
    candidates = [
        (ordinal(w.name, v), v)
        for v in leader.voters
        if v != leader.node and v not in exclude and caught_up(w.nodes.get(v), leader)
    ]
    known = [(o, v) for o, v in candidates if o is not None]
    if not known:
        return None
    updated = [
        (o, v)
        for o, v in known
        if released_from is not None and o >= released_from and o in w.pods and w.pods[o].updated
    ]
    return (max(updated) if updated else min(known))[1]


def _roll(w: World, replicas: int, partition: int, leader: ClusterInfo | None) -> Step:
    def wait(why: str, p: int = partition) -> Step:
        return Step(replicas, p, waiting=why, leader=leader)

    missing = [i for i in range(replicas) if i not in w.pods or not w.pods[i].ready]
    if not w.template_current:  # pods' revisions are relative to the old template yet
        return wait("applying the new pod template, held")
    if (w.sts_replicas or 0) != replicas or not w.observed:
        return wait("waiting for the StatefulSet controller")
    if missing:
        return wait(f"waiting for pod ordinals {missing} to be ready")
    if leader is not None:
        voters = sorted(leader.voters)
        lagging = [v for v in voters if v != leader.node and not caught_up(w.nodes.get(v), leader)]
        if lagging:
            return wait(f"waiting for {', '.join(lagging)} to catch up")
    partition = min(partition, replicas)
    if any(not w.pods[i].updated for i in range(partition, replicas)):
        return wait("waiting for released pods to run the new template")
    if partition == 0:
        return Step(replicas, 0, waiting="", done=True, leader=leader)
    nxt = partition - 1
    node = f"{w.name}-{nxt}"
    if w.pods[nxt].updated:  # already on the new template (e.g. created after it)
        return Step(replicas, nxt, waiting=f"released {node} (already updated)", leader=leader)
    if leader is not None and leader.node == node and replicas > 1:
        target = _transfer_target(w, leader, {node}, released_from=partition)
        if target is None:
            return wait(f"waiting for a caught-up voter to take over from {node}")
        action = Action("transfer", target)
        return Step(replicas, partition, action, waiting=str(action), leader=leader)
    return Step(replicas, nxt, released=node, waiting=f"replacing {node}", leader=leader)
