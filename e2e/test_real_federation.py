"""A three-region federation on real pods: three real nodes (one per region), one helm
install, a VM written in one region and read in the other two.

It needs `novacron node` to be the federated node (the federation host joining the
DWCPFederation's peers); until the image has that, the test says so and skips. The time
from `helm install` to the first cross-region read is printed."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from conftest import ROOT, wait_for
from novacron_operator import capabilities
from realcluster import Real

pytestmark = pytest.mark.e2e
NS = "novacron-fed"
RELEASE = "novacron-fed"
REGIONS = ("us-east", "eu-west", "ap-south")


def federated_node() -> bool:
    """Whether this build's `novacron node` takes part in a federation."""
    out = subprocess.run(
        [sys.executable, "-m", "novacron_core.runtime.node_cli", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return "federation" in out.stdout.lower()


def values() -> dict[str, Any]:
    return {
        "operator": {"replicas": 1},
        "networkPolicy": {"enabled": True},
        "cluster": {"create": True, "name": "fed", "spec": {}},
        "regionDefaults": {
            "replicas": 3,
            "resources": {"cpu": "20m", "memory": "256Mi"},
            "storage": {"size": "64Mi"},
            # (these fields exist in the CRD only once the operator deploys them)
            **({"agent": {"enabled": False}} if capabilities.available("agent") else {}),
            **(
                {"gateway": {"minReplicas": 1, "maxReplicas": 1}}
                if capabilities.available("gateway")
                else {}
            ),
        },
        "regions": [{"name": r, "spec": {"zones": [f"{r}-a"]}} for r in REGIONS],
        "federation": {
            "create": True,
            "name": "fed",
            "spec": {"members": [{"name": r, "regionRef": {"name": r}} for r in REGIONS]},
        },
    }


@pytest.fixture(scope="module")
def federation(real: Real, tmp_path_factory: pytest.TempPathFactory) -> Iterator[float]:
    if not federated_node():
        pytest.skip(
            "`novacron node` is not a federated node in this build (branch `region` makes it "
            "one): cross-region reads cannot happen yet"
        )
    nodes = real.json("get", "nodes")["items"]
    regions = {n["metadata"]["labels"].get("topology.kubernetes.io/region") for n in nodes}
    if not set(REGIONS) <= regions:
        pytest.skip(f"needs a real node per region; this cluster's nodes serve {regions}")
    real.apply(
        [
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {
                    "name": NS,
                    "labels": {"pod-security.kubernetes.io/enforce": "restricted"},
                },
            }
        ]
    )
    path = tmp_path_factory.mktemp("fed") / "values.yaml"
    path.write_text(yaml.safe_dump(values()))
    start = time.monotonic()
    real.helm("install", RELEASE, str(ROOT / "charts" / "novacron"), "-n", NS, "-f", str(path))
    try:
        yield start
    finally:
        real.run("delete", "novacron", "--all", "-n", NS, "--timeout=120s", check=False)
        real.helm("uninstall", RELEASE, "-n", NS, "--wait", "--timeout=120s")
        real.run("delete", "namespace", NS, "--wait=false", check=False)


def test_vm_written_in_one_region_is_read_in_the_others(real: Real, federation: float) -> None:
    pods = [f"{r}-{i}" for r in REGIONS for i in range(3)]
    wait_for(
        "9 node pods Ready",
        lambda: (
            real.run(
                "wait",
                "-n",
                NS,
                "--for=condition=Ready",
                "--timeout=5s",
                *[f"pod/{p}" for p in pods],
                check=False,
            ).returncode
            == 0
        ),
        timeout=420,
        every=3,
    )
    vm = {
        "id": f"vm-{uuid.uuid4().hex[:8]}",
        "name": "e2e",
        "spec": {"cpus": 2, "memory_mib": 2048, "image": "debian-12"},
    }
    created = wait_for(
        "a VM created in us-east",
        lambda: (
            (r := real.node_http(NS, "us-east-0", "POST", "/v1/vms", json.dumps(vm)))["status"]
            in (200, 201)
            and r
        ),
        timeout=60,
    )
    vm_id = created["body"].get("id", vm["id"])
    for region in REGIONS[1:]:
        got = wait_for(
            f"{vm_id} read in {region}",
            lambda region=region: (
                (r := real.node_http(NS, f"{region}-0", "GET", f"/v1/vms/{vm_id}"))["status"] == 200
                and r
            ),
            timeout=120,
        )
        assert got["body"]["id"] == vm_id
    took = time.monotonic() - federation
    print(f"\nhelm install -> a VM written in us-east read in eu-west and ap-south: {took:.1f}s")
