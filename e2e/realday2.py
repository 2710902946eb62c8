"""Day-2 operations on real pods (issue 22 item 3), driven by e2e/test_real_pods.py on the
region its ``install`` fixture brought up: a storage resize, the loss of a member's volume,
an image upgrade. Each is measured and bounded; what the cluster cannot do (the
local-path provisioner cannot grow a volume) is shown as the operator reports it."""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from conftest import wait_for
from realcluster import Real

Obj = dict[str, Any]


def view(real: Real, ns: str, pod: str) -> Obj | None:
    """The node's own ``/v1/cluster`` answer, or None while it does not answer."""
    try:
        out = real.node_http(ns, pod, "GET", "/v1/cluster")
    except (AssertionError, ValueError, IndexError, subprocess.TimeoutExpired):
        return None
    body = out["body"]
    return body if out["status"] == 200 and isinstance(body, dict) else None


def condition(region: Obj, type_: str) -> Obj:
    for c in (region.get("status") or {}).get("conditions") or []:
        if c.get("type") == type_:
            return dict(c)
    return {}


def events(real: Real, ns: str, region: str, since_rv: int) -> list[tuple[str, str]]:
    """(reason, message) of the operator's Events on the region created after ``since_rv``,
    in the order the API server stored them (resourceVersion)."""
    items = real.json(
        "get", "events", "-n", ns, "--field-selector", f"involvedObject.name={region}"
    )["items"]
    items = [e for e in items if int(e["metadata"]["resourceVersion"]) > since_rv]
    items.sort(key=lambda e: int(e["metadata"]["resourceVersion"]))
    return [(str(e["reason"]), str(e["message"])) for e in items]


def resource_version(real: Real, ns: str, kind: str, name: str) -> int:
    return int(real.json("get", kind, name, "-n", ns)["metadata"]["resourceVersion"])


def ready(pod: Obj) -> bool:
    if pod["metadata"].get("deletionTimestamp"):
        return False
    conds = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conds)


@dataclass
class Writes:
    """Client writes made while an operation runs: one per call, to a Ready pod (a
    follower forwards it), a new key each time so the acknowledged ones can be read back."""

    real: Real
    ns: str
    pods: list[str]
    acked: dict[str, str] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    last_ok: float = field(default_factory=time.monotonic)
    longest_gap: float = 0.0
    _turn: int = 0

    def one(self, candidates: list[str]) -> None:
        if not candidates:
            self._gap()
            return
        pod = candidates[self._turn % len(candidates)]
        self._turn += 1
        key, value = f"d2-{uuid.uuid4().hex[:10]}", f"v{len(self.acked)}"
        try:
            out = self.real.node_http(self.ns, pod, "PUT", f"/v1/kv/{key}", value)
        except (AssertionError, ValueError, IndexError, subprocess.TimeoutExpired) as e:
            self.failed.append(f"{pod}: {str(e)[:120]}")
            self._gap()
            return
        if out["status"] == 200:
            self.acked[key] = value
            self._gap()
            self.last_ok = time.monotonic()
        else:
            self.failed.append(f"{pod}: {out['status']} {json.dumps(out['body'])[:160]}")
            self._gap()

    def _gap(self) -> None:
        # from one acknowledged write to the next: the callers' poll cadence included
        self.longest_gap = max(self.longest_gap, time.monotonic() - self.last_ok)

    def summary(self) -> str:
        return (
            f"{len(self.acked)} writes acknowledged, {len(self.failed)} refused or failed, "
            f"longest time between two acknowledged writes {self.longest_gap:.1f}s"
        )

    def read_back(self, pod: str) -> list[str]:
        """Keys acknowledged but not read back from ``pod`` (one exec reads them all)."""
        code = (
            "import json, urllib.request, urllib.error\n"
            f"keys = {sorted(self.acked)!r}\n"
            "got = {}\n"
            "for k in keys:\n"
            "    try:\n"
            "        r = urllib.request.urlopen('http://127.0.0.1:8080/v1/kv/' + k, timeout=5)\n"
            "        got[k] = r.read().decode()\n"
            "    except (urllib.error.URLError, OSError) as e:\n"
            "        got[k] = None\n"
            "print(json.dumps(got))\n"
        )
        got = json.loads(self.real.exec_python(self.ns, pod, code, timeout=90).splitlines()[-1])
        return [k for k, v in self.acked.items() if got.get(k) != v]


def pods_of(real: Real, ns: str, region: str) -> dict[str, Obj]:
    sel = f"app.kubernetes.io/instance={region},app.kubernetes.io/component=node"
    return {
        p["metadata"]["name"]: p for p in real.json("get", "pods", "-n", ns, "-l", sel)["items"]
    }


def until(what: str, check: Callable[[], Any], timeout: float, every: float = 1.0) -> Any:
    return wait_for(what, check, timeout=timeout, every=every)


def merge_patch(real: Real, ns: str, region: str, patch: Obj) -> None:
    real.run("patch", "novacronregion", region, "-n", ns, "--type=merge", "-p", json.dumps(patch))


def leader_now(real: Real, ns: str, candidates: list[str]) -> tuple[str, int] | None:
    """(leader, term) as the first answering candidate sees it."""
    for pod in candidates:
        v = view(real, ns, pod)
        if v is not None and v.get("leader"):
            return str(v["leader"]), int(v["term"])
    return None


# ------------------------------------------------------------------ storage resize


@dataclass
class ResizeOutcome:
    condition: Obj
    seconds: float  # the patch -> the operator's condition says why
    expandable: bool


def resize_storage(real: Real, ns: str, region: str, pods: list[str], size: str) -> ResizeOutcome:
    """Raise ``storage.size``; the operator either expands the claims (their StorageClass
    allows it) or says why it cannot, and no pod restarts either way."""
    claim = real.json("get", "pvc", f"data-{pods[0]}", "-n", ns)
    before = claim["spec"]["resources"]["requests"]["storage"]
    sc = real.json("get", "storageclass", claim["spec"]["storageClassName"])
    expandable = bool(sc.get("allowVolumeExpansion"))
    uids = {n: p["metadata"]["uid"] for n, p in pods_of(real, ns, region).items()}
    start = time.monotonic()
    merge_patch(real, ns, region, {"spec": {"storage": {"size": size}}})
    grows = size != before
    want = ("True", "AsSpecified") if expandable or not grows else ("False", "ExpansionRefused")

    def reported() -> Obj | None:
        c = condition(real.json("get", "novacronregion", region, "-n", ns), "VolumesResized")
        return c if (c.get("status"), c.get("reason")) == want else None

    c = until(f"VolumesResized={want[0]} ({want[1]})", reported, timeout=60)
    took = time.monotonic() - start
    after = {n: p["metadata"]["uid"] for n, p in pods_of(real, ns, region).items()}
    assert after == uids, "a resize restarts no pod"
    sizes = {
        p["spec"]["resources"]["requests"]["storage"]
        for p in real.json("get", "pvc", "-n", ns)["items"]
        if p["metadata"]["name"] in {f"data-{n}" for n in pods}
    }
    assert sizes == ({size} if expandable else {before}), sizes  # a refused claim is unchanged
    return ResizeOutcome(c, took, expandable)


# ------------------------------------------------------------------ volume loss


@dataclass
class LossOutcome:
    victim: str
    replaced_seconds: float  # deletion -> the member is a caught-up voter again
    events: list[tuple[str, str]]
    view: Obj  # the replaced node's /v1/cluster once caught up (snapshot_index: by snapshot)


def lose_volume(real: Real, ns: str, region: str, pods: list[str], writes: Writes) -> LossOutcome:
    """Delete a follower's PersistentVolumeClaim and its pod (the volume's directory goes
    with the claim: reclaimPolicy Delete). The StatefulSet makes a new claim and pod; the
    node starts empty, says it is rejoining, and the operator replaces the member (remove,
    add as a learner, promote once caught up) while writes continue on the others."""
    leader, _ = until("a leader", lambda: leader_now(real, ns, pods), timeout=60)
    victim = next(p for p in reversed(pods) if p != leader)
    for _ in range(5):  # acknowledged before the loss
        writes.one([leader])
    old_claim = real.json("get", "pvc", f"data-{victim}", "-n", ns)
    old_pv = old_claim["spec"]["volumeName"]
    old_pod = real.json("get", "pod", victim, "-n", ns)["metadata"]["uid"]
    since = resource_version(real, ns, "novacronregion", region)
    start = time.monotonic()
    real.run("delete", "pvc", f"data-{victim}", "-n", ns, "--wait=false")
    real.run("delete", "pod", victim, "-n", ns, "--grace-period=0", "--force")
    others = [p for p in pods if p != victim]
    deadline = start + 240
    while True:
        assert time.monotonic() < deadline, f"{victim} not replaced in 240s: {writes.summary()}"
        writes.one(others)
        ps = pods_of(real, ns, region)
        pod = ps.get(victim)
        if pod is None or pod["metadata"]["uid"] == old_pod or not ready(pod):
            continue
        v = view(real, ns, victim)
        lead = view(real, ns, str(v.get("leader"))) if v and v.get("leader") else None
        if (
            v is not None
            and lead is not None
            and victim in lead.get("voters", [])
            and not v.get("rejoining")
            and int(v["applied"]) + 5 >= int(lead["commit"])
        ):
            break
        time.sleep(0.5)
    took = time.monotonic() - start
    new_claim = real.json("get", "pvc", f"data-{victim}", "-n", ns)
    assert new_claim["metadata"]["uid"] != old_claim["metadata"]["uid"]
    assert new_claim["spec"]["volumeName"] != old_pv
    # reclaimPolicy Delete: the provisioner's helper pod removes the directory, then the PV
    until(
        f"the lost volume {old_pv} to be deleted",
        lambda: "NotFound" in real.run("get", "pv", old_pv, check=False).stderr,
        timeout=60,
    )
    return LossOutcome(victim, took, events(real, ns, region, since), v)


# ------------------------------------------------------------------ image upgrade


@dataclass
class Rollout:
    new_image: str
    seconds: float  # the patch -> every pod on the new image, the region Ready
    order: list[str]  # pods in the order they were replaced
    min_ready: int  # the fewest Ready node pods seen at once
    progress: list[str]  # the Progressing messages the status showed, in order
    leaders: list[str]  # the leaders seen, in order (no repeats)
    leader_on_a_down_pod: list[str]
    events: list[tuple[str, str]]
    terms: tuple[int, int]


def tag_image(real: Real, old: str, new: str) -> None:
    """The same image under a new tag in every real node's containerd: there is no
    registry to push a second build to, and what a rolling upgrade exercises is the pod
    template changing, which a new tag does."""
    node = real.cluster.node if real.cluster else None
    assert node is not None
    for k in node.kubelets:
        out = subprocess.run(
            ["ctr", "--address", str(k.socket), "--namespace", "k8s.io",
             "images", "tag", "--force", old, new],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert out.returncode == 0, f"ctr images tag: {out.stderr.strip()}"


def node_image(sts: Obj) -> str:
    containers = sts["spec"]["template"]["spec"]["containers"]
    return str(next(c["image"] for c in containers if c["name"] == "node"))


def upgrade_image(
    real: Real, ns: str, region: str, pods: list[str], writes: Writes, tag: str
) -> Rollout:
    old = node_image(real.json("get", "statefulset", region, "-n", ns))
    new = f"{old.rsplit(':', 1)[0]}:{tag}"
    tag_image(real, old, new)
    uids = {n: p["metadata"]["uid"] for n, p in pods_of(real, ns, region).items()}
    first = until("a leader", lambda: leader_now(real, ns, pods), timeout=60)
    since = resource_version(real, ns, "novacronregion", region)
    start = time.monotonic()
    merge_patch(real, ns, region, {"spec": {"image": new}})
    order: list[str] = []
    progress: list[str] = []
    leaders = [first[0]]
    on_down: list[str] = []
    min_ready = len(pods)
    term = first[1]
    deadline = start + 300
    while True:
        assert time.monotonic() < deadline, (
            f"rollout not done in 300s: replaced {order}, {progress[-3:]}, {writes.summary()}"
        )
        ps = pods_of(real, ns, region)
        up = [p for p in pods if p in ps and ready(ps[p])]
        min_ready = min(min_ready, len(up))
        for p in pods:
            if p in ps and ps[p]["metadata"]["uid"] != uids[p] and p not in order:
                order.append(p)
        reg = real.json("get", "novacronregion", region, "-n", ns)
        prog = condition(reg, "Progressing")
        if prog.get("status") == "True" and (not progress or progress[-1] != prog["message"]):
            progress.append(str(prog["message"]))
        seen = leader_now(real, ns, up)
        if seen is not None:
            term = max(term, seen[1])
            if seen[0] != leaders[-1]:
                leaders.append(seen[0])
            if seen[0] not in up:
                on_down.append(f"{seen[0]} (term {seen[1]}, Ready: {up})")
        writes.one(up)
        done = (
            len(order) == len(pods)
            and len(up) == len(pods)
            and all(
                c["image"] == new
                for p in pods
                for c in ps[p]["spec"]["containers"]
                if c["name"] == "node"
            )
            and condition(reg, "Ready").get("status") == "True"
            and prog.get("status") != "True"
        )
        if done:
            break
    took = time.monotonic() - start
    return Rollout(
        new, took, order, min_ready, progress, leaders, on_down,
        events(real, ns, region, since), (first[1], term),
    )  # fmt: skip
