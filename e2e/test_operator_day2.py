"""Day-2 operations against REAL nodes: the local control plane's pods are fake, so a
kubelet stand-in (nodes.py) runs a real ``novacron node`` for each Running pod, and the
operator reaches them through NOVACRON_NODE_ADDRESSES. Each change runs with the operator
crashing at the named failpoint in its middle (the etcd-operator way), then a clean
operator resumes it: scale-up (member-add), scale-down (member-remove), and a rolling
image change (leadership-transfer)."""

from __future__ import annotations

import json
import os
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import Deployment, Kubectl, deployed, wait_for
from nodes import SELECTOR, FakeKubelet

pytestmark = pytest.mark.e2e
NAME = "east"
IDENTITY = "day2"
CLUSTER = {
    "apiVersion": "novacron.io/v1alpha1",
    "kind": "NovaCronCluster",
    "metadata": {"name": "fleet"},
    "spec": {"version": "0.1.0"},
}


def region(replicas: int, image: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "clusterRef": {"name": "fleet"},
        "regionName": "us-east",
        "zones": ["us-east-a", "us-east-b"],
        "replicas": replicas,
    }
    if image:
        spec["image"] = image
    return {
        "apiVersion": "novacron.io/v1alpha1",
        "kind": "NovaCronRegion",
        "metadata": {"name": NAME},
        "spec": spec,
    }


class Day2:
    def __init__(self, dep: Deployment, nodes: FakeKubelet) -> None:
        self.dep, self.k, self.ns, self.nodes = dep, dep.k, dep.ns, nodes

    def status(self) -> dict[str, Any]:
        obj = self.k.get("ncr", NAME, self.ns) or {}
        return dict(obj.get("status") or {})

    def ready(self) -> bool:
        obj = self.k.get("ncr", NAME, self.ns) or {}
        st = obj.get("status") or {}
        return st.get("observedGeneration") == obj["metadata"]["generation"] and any(
            c["type"] == "Ready" and c["status"] == "True" for c in st.get("conditions") or []
        )

    def pods(self) -> list[dict[str, Any]]:
        sel = SELECTOR.format(name=NAME)
        items: list[dict[str, Any]] = self.k.json("get", "pods", "-n", self.ns, "-l", sel)["items"]
        return items

    def group(self) -> dict[str, Any] | None:
        """The leader's view of the group, asked of every running node."""
        for pod in self.nodes.running():
            doc = self.nodes.cluster(pod)
            if doc and doc.get("role") == "leader":
                return doc
        return None

    def converged(self, replicas: int, image: str | None = None) -> bool:
        g = self.group()
        want = [f"{NAME}-{i}" for i in range(replicas)]
        pods = self.pods()
        return bool(
            g is not None
            and sorted(g["voters"]) == want
            and len(g["voters"]) == len(set(g["voters"]))  # no duplicate member
            and not g["learners"]
            and sorted(p["metadata"]["name"] for p in pods) == want
            and (image is None or all(p["spec"]["containers"][0]["image"] == image for p in pods))
            and self.nodes.running() == want
            and self.ready()
            and self.status().get("members") == want
        )

    def crash_at(self, failpoint: str, change: dict[str, Any]) -> None:
        """Restart the operator armed with ``failpoint``, make ``change``, and see it die
        there: exit 137 and the failpoint's message."""
        for op in list(self.dep.operators):
            op.stop()
            self.dep.operators.remove(op)
        op = self.dep.new_operator(IDENTITY, {"NOVACRON_FAILPOINT": failpoint})
        self.k.apply(change, self.ns)
        wait_for(f"operator crash at {failpoint}", op.exited, 60, every=0.2)
        code = op.stop()
        self.dep.operators.remove(op)
        assert code == 137, f"exit {code}, not the failpoint's"
        assert f"failpoint {failpoint}: crashing" in op.log()

    def resume(self) -> None:
        self.dep.new_operator(IDENTITY)

    def events(self, *reasons: str) -> list[str]:
        items = self.k.json("get", "events", "-n", self.ns)["items"]
        items.sort(key=lambda e: int(e["metadata"]["resourceVersion"]))  # creation order
        return [
            e["message"]
            for e in items
            if e["involvedObject"]["name"] == NAME and e.get("reason") in reasons
        ]


@pytest.fixture(scope="module")
def day2(kubectl: Kubectl) -> Iterator[Day2]:
    if os.environ.get("NOVACRON_E2E_KUBECONFIG") or os.environ.get("KUBECONFIG"):
        pytest.skip("a real cluster's pods run their own nodes: the stand-in is for kwok")
    with deployed(kubectl, manage_members=True) as dep:
        nodes = FakeKubelet(kubectl.kubeconfig, dep.ns, NAME, dep.log_dir / "nodes")
        dep.env["NOVACRON_NODE_ADDRESSES"] = str(nodes.map_path)
        nodes.start()
        pids: list[int] = []
        try:
            dep.new_operator(IDENTITY)
            kubectl.apply([CLUSTER, region(3)], dep.ns)
            d = Day2(dep, nodes)
            start = time.monotonic()
            wait_for("3 real nodes, one group, region Ready", lambda: d.converged(3), 90)
            print(f"\nregion with 3 real nodes Ready in {time.monotonic() - start:.1f}s")
            yield d
        finally:
            pids = [p.proc.pid for p in nodes.procs.values()]
            nodes.stop()
        for pid in pids:  # every node process group is gone
            with pytest.raises(ProcessLookupError):
                os.killpg(pid, 0)


def test_status_reports_the_groups_real_leader_term_and_commit_index(day2: Day2) -> None:
    g = wait_for("a leader", day2.group, 30)
    st = wait_for(
        "status from the admin API",
        lambda: (s := day2.status()).get("leader") == g["leader"] and s,
        30,
    )
    assert st["term"] == g["term"]
    assert 1 <= st["commitIndex"] <= g["commit"]
    assert st["members"] == [f"{NAME}-{i}" for i in range(3)]
    # the region's health score and SLO burn rates, as the leader's node serves them
    health = wait_for("status.health", lambda: day2.status().get("health"), 45)
    assert 0 <= health["score"] <= 100
    assert health["node"] in st["members"]
    assert {s["name"] for s in health["slos"]} == {"availability", "write_latency"}
    # (the node's own judgement: just after the group formed, its election count may
    # still weigh the leader component down)
    components = health["components"]
    assert set(components) <= {"leader", "replication", "errors", "links", "conflicts"}
    assert all(0 <= v <= 1 for v in components.values())
    table = day2.k.run("get", "ncr", NAME, "-n", day2.ns).stdout
    print(f"\n{table}")
    assert g["leader"] in table
    assert "TERM" in table


def test_scale_3_to_5_learner_then_voter_resumes_after_crash_at_member_add(day2: Day2) -> None:
    day2.crash_at("member-add", region(5))
    # crashed between the halves: the new member is a learner, not yet a voter
    g = wait_for("group", day2.group, 10)
    assert g["learners"] == [f"{NAME}-3"], g
    assert f"{NAME}-3" not in g["voters"]
    start = time.monotonic()
    day2.resume()
    wait_for("5 voters, 5 pods, Ready", lambda: day2.converged(5), 90)
    print(f"\nresumed scale-up converged in {time.monotonic() - start:.1f}s")
    steps = [" ".join(m.split()[:2]) for m in day2.events("MemberAdded", "MemberPromoted")]
    assert steps == [  # learner first, then voter, one member at a time, none twice
        f"add_learner {NAME}-3",
        f"promote {NAME}-3",
        f"add_learner {NAME}-4",
        f"promote {NAME}-4",
    ], steps
    # the joiners started empty and got everything through the group
    four = day2.nodes.cluster(f"{NAME}-4") or {}
    assert four.get("applied", 0) >= (day2.group() or {}).get("commit", 1) - 100


def test_scale_5_to_3_removes_members_before_pods_resumes_after_crash_at_member_remove(
    day2: Day2,
) -> None:
    day2.crash_at("member-remove", region(3))
    g = wait_for("group", day2.group, 10)
    assert f"{NAME}-4" not in g["voters"] + g["learners"]
    # removed from the group while its pod is still there: the StatefulSet had not shrunk
    assert f"{NAME}-4" in [p["metadata"]["name"] for p in day2.pods()]
    day2.resume()
    wait_for("3 voters, 3 pods, Ready", lambda: day2.converged(3), 90)
    removed = [m.split()[1] for m in day2.events("MemberRemoved")]
    assert removed == [f"{NAME}-4", f"{NAME}-3"], removed
    stops = [h for h in day2.nodes.history if h.startswith("stop")]
    assert set(stops[-2:]) == {f"stop {NAME}-4", f"stop {NAME}-3"}


def transfer(day2: Day2, target: str) -> None:
    g = wait_for("group", day2.group, 10)
    url = day2.nodes.url(g["id"]) + "/v1/cluster/transfer"
    req = urllib.request.Request(
        url, json.dumps({"target": target}).encode(), {"Content-Type": "application/json"}
    )
    urllib.request.urlopen(req, timeout=5).close()
    wait_for(f"{target} leads", lambda: (day2.group() or {}).get("id") == target, 15)


def test_image_change_moves_leadership_off_a_pod_before_replacing_it_after_crash(
    day2: Day2,
) -> None:
    top = f"{NAME}-2"
    transfer(day2, top)  # the first pod the rollout replaces leads: it must move first
    image = "registry.example.com/novacron:0.2.0"
    day2.crash_at("leadership-transfer", region(3, image))
    sts = day2.k.get("statefulset", NAME, day2.ns)
    assert sts["spec"]["updateStrategy"]["rollingUpdate"]["partition"] == 3  # nothing released
    old = {p["metadata"]["name"]: p["spec"]["containers"][0]["image"] for p in day2.pods()}
    assert old[top] != image
    day2.resume()
    wait_for("every pod on the new image, group whole", lambda: day2.converged(3, image), 120)
    transfers = day2.events("LeaderTransfer")
    assert transfers, "no leadership transfer"
    assert f"on leader {top}" in transfers[0], transfers
    rolled = [m.split()[1] for m in day2.events("RollingPod")]
    assert rolled == [f"{NAME}-2", f"{NAME}-1", f"{NAME}-0"], rolled
    # each replaced node came back on the new image with its data (the same member id)
    restarts = [h for h in day2.nodes.history if h.startswith("start") and image in h]
    assert sorted(h.split()[1] for h in restarts) == [f"{NAME}-{i}" for i in range(3)]


def test_a_member_back_on_an_empty_volume_abstains_until_the_operator_replaces_it(
    day2: Day2,
) -> None:
    cm = f"{NAME}-config"
    wait_for(
        "the ConfigMap tells pods that start from now on that the group exists",
        lambda: (
            ((day2.k.get("configmap", cm, day2.ns) or {}).get("data") or {}).get("cluster-state")
            == "existing"
        ),
        30,
    )
    wait_for("a whole group", lambda: day2.converged(3, None), 60)
    g = wait_for("group", day2.group, 10)
    victim = next(f"{NAME}-{i}" for i in range(3) if f"{NAME}-{i}" != g["id"])
    leader_url = day2.nodes.url(g["id"])
    for i in range(20):  # acknowledged writes the lost disk held too
        req = urllib.request.Request(f"{leader_url}/v1/kv/lost-{i}", f"v{i}".encode(), method="PUT")
        urllib.request.urlopen(req, timeout=5).close()
    day2.nodes.lose_volume(victim)
    day2.k.run("delete", "pod", victim, "-n", day2.ns, "--wait=false")
    start = time.monotonic()
    wait_for(
        f"{victim} restarted on an empty volume, rejoining instead of bootstrapping",
        lambda: "data dir empty but the group exists" in day2.nodes.log(victim),
        60,
    )
    wait_for(
        f"{victim} replaced: a voter again, no longer rejoining, region Ready",
        lambda: day2.converged(3) and (day2.nodes.cluster(victim) or {}).get("rejoining") is False,
        120,
    )
    print(f"\nmember replace after a lost volume converged in {time.monotonic() - start:.1f}s")
    assert [m.split()[1] for m in day2.events("MemberRemoved")][-1] == victim
    steps = [" ".join(m.split()[:2]) for m in day2.events("MemberAdded", "MemberPromoted")]
    assert steps[-2:] == [f"add_learner {victim}", f"promote {victim}"], steps
    # what it held before the loss came back through the group: read it from its own state
    transfer(day2, victim)
    for i in (0, 19):
        with urllib.request.urlopen(f"{day2.nodes.url(victim)}/v1/kv/lost-{i}", timeout=5) as r:
            assert r.read() == f"v{i}".encode()
