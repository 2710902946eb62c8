"""``DWCPFederation.spec.conflictPolicies`` on a real API server: the schema and its CEL
accept exactly what the nodes accept (hypothesis values, server-side dry runs), refuse the
rest naming the field; and a change made with kubectl reaches running ``novacron node``
processes through the operator's topology.json and changes what they decide.

The nodes here are real processes on this host, not pods: the federation's members are
remote members pointing at them, and the test copies the ConfigMap's topology.json into
their federation file whenever it changes (what the kubelet does for a mounted ConfigMap).
The real-pod federation (e2e/test_real_federation.py) mounts the same ConfigMap."""

from __future__ import annotations

import json
import re
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import Deployment, Kubectl, wait_for
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from novacron_operator import names

from novacron_core.conflict import policy
from tests.operator.policy_values import node_accepts, policies
from tests.runtime.test_federated_node import REGIONS, Fed

pytestmark = pytest.mark.e2e
BATCH = 40


def fed_obj(name: str, conflict_policies: Any, members: list[dict[str, Any]] | None = None) -> Any:
    return {
        "apiVersion": "novacron.io/v1alpha1",
        "kind": "DWCPFederation",
        "metadata": {"name": name},
        "spec": {
            "clusterRef": {"name": "fleet"},
            "members": members or [{"name": "a", "endpoints": [{"host": "a", "port": 7000}]}],
            "conflictPolicies": conflict_policies,
        },
    }


def dry_run(kubectl: Kubectl, objs: list[Any]) -> dict[str, str | None]:
    """name -> None (accepted) or the API server's refusal, one server-side dry run."""
    out = kubectl.run(
        "create",
        "--dry-run=server",
        # kubectl's own schema check would refuse the whole list for one bad item; the
        # API server still checks the schema and CEL of each
        "--validate=false",
        "-n",
        "default",
        "-o",
        "name",
        "-f",
        "-",
        stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": objs}),
        check=False,
    )
    got: dict[str, str | None] = {}
    for line in out.stdout.splitlines():  # dwcpfederation.novacron.io/NAME
        if "/" in line:
            got[line.split("/", 1)[1].split()[0]] = None
    # "The DWCPFederation "p-3" is invalid: ..." (kubectl may also name the group), one
    # line or a list of "* field: why" lines up to the next object's refusal
    head = r'DWCPFederation(?:\.novacron\.io)? "([^"]+)" is invalid: '
    heads = list(re.finditer(head, out.stderr))
    for m, nxt in zip(heads, [*heads[1:], None], strict=False):  # (none refused: [None])
        got[m.group(1)] = out.stderr[m.end() : nxt.start() if nxt else None]
    missing = [o["metadata"]["name"] for o in objs if o["metadata"]["name"] not in got]
    assert not missing, f"no verdict for {missing}: {out.stdout} {out.stderr}"
    return got


@settings(
    max_examples=4,
    deadline=None,
    # no shrinking: each step is an API call; the failing value is in the message
    phases=(Phase.explicit, Phase.generate),
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(st.lists(policies(), min_size=BATCH, max_size=BATCH))
def test_the_api_server_accepts_exactly_what_the_nodes_accept(
    kubectl: Kubectl, batch: list[dict[str, Any]]
) -> None:
    verdicts = dry_run(kubectl, [fed_obj(f"p-{i}", raw) for i, raw in enumerate(batch)])
    for i, raw in enumerate(batch):
        refusal = verdicts[f"p-{i}"]
        assert (refusal is None) == node_accepts(raw), (raw, refusal)
        if refusal is not None:
            assert "spec.conflictPolicies" in refusal, refusal


@pytest.mark.parametrize(
    ("raw", "field", "hint"),
    [
        ({"default": "random"}, "spec.conflictPolicies.default", "vote"),
        ({"writes": "anywhere"}, "spec.conflictPolicies.writes", "multi"),
        (
            {"rules": [{"field": "spec.", "strategy": "lww"}]},
            "spec.conflictPolicies.rules[0].field",
            "should match",
        ),
        (
            {"rules": [{"field": "spec.*", "strategy": "lww", "strategies": ["vote"]}]},
            "spec.conflictPolicies.rules[0]",
            "not both",
        ),
        ({"default": "priority"}, "spec.conflictPolicies.priority", "who wins"),
        ({"mustAgree": [["spec.cpus"]]}, "spec.conflictPolicies.mustAgree[0]", "2 items"),
        ({"default": ["vote", "lww"]}, "spec.conflictPolicies.default", "string"),
    ],
)
def test_a_bad_policy_is_refused_naming_the_field(
    kubectl: Kubectl, raw: dict[str, Any], field: str, hint: str
) -> None:
    (refusal,) = dry_run(kubectl, [fed_obj("bad", raw)]).values()
    assert refusal is not None, f"{raw} was accepted"
    assert field in refusal, refusal
    assert hint in refusal, refusal


# ------------------------------------------------------------- a running federation


class Mount:
    """The kubelet's part: the ConfigMap's topology.json copied into the nodes' file when
    it changes (replaced whole, as a ConfigMap volume swaps it)."""

    def __init__(self, k: Kubectl, ns: str, cm: str, fed: Fed) -> None:
        self.k, self.ns, self.cm, self.fed = k, ns, cm, fed
        self.stop = threading.Event()
        self.last: str | None = None
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        while not self.stop.wait(0.3):
            cm = self.k.get("configmap", self.cm, self.ns)
            text = ((cm or {}).get("data") or {}).get("topology.json")
            if text and text != self.last:
                self.fed.write(text)
                self.last = text


def get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=2) as r:
        return json.loads(r.read())


def post(url: str, body: Any) -> tuple[int, Any]:
    req = urllib.request.Request(
        url, json.dumps(body).encode(), {"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[Fed]:
    fed = Fed(tmp_path)
    try:
        yield fed
    finally:
        fed.stop()


def effective(fed: Fed, region: str) -> Any:
    try:
        return get(fed.url(region) + "/v1/federation/status").get("conflict_policies")
    except OSError:
        return None


def test_a_conflict_policy_edited_with_kubectl_changes_what_running_nodes_decide(
    deployment: Deployment, nodes: Fed
) -> None:
    dep, k = deployment, deployment.k
    members = [
        {"name": r, "endpoints": [{"host": "127.0.0.1", "port": nodes.peer[r]}]} for r in REGIONS
    ]
    k.apply(fed_obj("live", {"writes": "home"}, members), dep.ns)
    mount = Mount(k, dep.ns, names.topology("live"), nodes)
    mount.thread.start()
    try:
        wait_for("the operator's topology.json", lambda: mount.last, 60)
        for r in REGIONS:
            nodes.start(r)
        for r in REGIONS:
            wait_for(
                f"{r} federated",
                lambda r=r: get(nodes.url(r) + "/v1/federation/status").get("member"),
                60,
            )
        east, west = nodes.url("east"), nodes.url("west")
        vm = {"id": "web", "name": "web", "spec": {"cpus": 1, "memory_mib": 512, "image": "x"}}
        # (503 until east's group has a leader; 409 once a retried create got through)
        wait_for("web created", lambda: post(east + "/v1/vms", vm)[0] in (200, 201, 409), 60)
        wait_for("web in west", lambda: post(west + "/v1/vms/web/power", {"state": "on"})[0] == 421)
        status, body = post(west + "/v1/vms/web/power", {"state": "on"})
        assert (status, body["outcome"], body["home_region"]) == (421, "not_applied", "east")

        # kubectl edits the federation: writes anywhere, a rule and a priority
        new = {
            "writes": "multi",
            "rules": [{"field": "labels.owner", "strategies": ["priority", "lww"]}],
            "priority": {"regions": ["west", "east"]},
        }
        k.run(
            "patch",
            "fed",
            "live",
            "-n",
            dep.ns,
            "--type=merge",
            "-p",
            json.dumps({"spec": {"conflictPolicies": new}}),
        )
        want = policy.to_json(
            policy.parse(k.get("fed", "live", dep.ns)["spec"]["conflictPolicies"])
        )
        assert want["writes"] == "multi"
        assert want["priority"]["regions"] == ["west", "east"]
        for r in REGIONS:
            wait_for(f"{r} to apply the edited policy", lambda r=r: effective(nodes, r) == want, 60)
        status, body = post(west + "/v1/vms/web/power", {"state": "on"})
        assert status == 200, body  # west now writes a VM homed in east
        assert body["lifecycle"] == "running"
        wait_for(
            "east to see west's write",
            lambda: get(east + "/v1/federation/vms/web").get("lifecycle") == "running",
            30,
        )
        fed = wait_for(
            "ConflictPoliciesSupported",
            lambda: next(
                (
                    c
                    for c in (k.get("fed", "live", dep.ns) or {})
                    .get("status", {})
                    .get("conditions", [])
                    if c["type"] == "ConflictPoliciesSupported" and "writes multi" in c["message"]
                ),
                None,
            ),
            60,
        )
        assert (fed["status"], fed["reason"]) == ("True", "AppliedByNodes")

        # a bad edit never reaches the nodes: the API server refuses it
        bad = k.run(
            "patch",
            "fed",
            "live",
            "-n",
            dep.ns,
            "--type=merge",
            "-p",
            json.dumps({"spec": {"conflictPolicies": {"default": "coinflip"}}}),
            check=False,
        )
        assert bad.returncode != 0
        assert "spec.conflictPolicies.default" in bad.stderr, bad.stderr
        assert all(effective(nodes, r) == want for r in REGIONS)
    finally:
        mount.stop.set()
        mount.thread.join(5)
        k.run("delete", "fed", "live", "-n", dep.ns, "--wait=false", check=False)
