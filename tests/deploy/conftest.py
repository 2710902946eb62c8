"""A Kubernetes API server for the deployment tests marked e2e.

The local control plane of novacron_operator.devcluster (etcd + kube-apiserver with
PodSecurity admission + controller-manager + scheduler + kwok nodes), started once per
session and torn down after; or, with NOVACRON_E2E_KUBECONFIG=<path>, any cluster (kind).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from .tools import CHART, find_tool

NOVACRON_KINDS = ("novacronclusters", "novacronregions", "dwcpfederations")


@dataclass
class Kube:
    kubeconfig: Path
    kubectl_bin: str
    helm_bin: str
    ca_file: Path | None
    server: str

    def kubectl(self, *args: str, stdin: str | None = None, check: bool = True) -> str:
        proc = subprocess.run(
            [self.kubectl_bin, "--kubeconfig", str(self.kubeconfig), *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=180,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)}:\n{proc.stderr.strip()}")
        return proc.stdout if check else proc.stdout + proc.stderr

    def get(self, *args: str) -> Any:
        return json.loads(self.kubectl("get", *args, "-o", "json"))

    def restricted_namespace(self, name: str) -> str:
        labels = [f"pod-security.kubernetes.io/{m}=restricted" for m in ("enforce", "warn")]
        self.kubectl("create", "namespace", name)
        self.kubectl("label", "namespace", name, *labels)
        return name


def image_overrides() -> list[str]:
    """--set flags pointing the chart at CI's freshly built images (kind), if any."""
    flags: list[str] = []
    for env, key in (("NOVACRON_OPERATOR_IMAGE", "operator.image"), ("NOVACRON_IMAGE", "image")):
        ref = os.environ.get(env)
        if ref:
            repo, _, tag = ref.rpartition(":")
            flags += ["--set", f"{key}.repository={repo}", "--set", f"{key}.tag={tag}"]
            flags += ["--set", f"{key}.pullPolicy=IfNotPresent"]
    return flags


@pytest.fixture(scope="session")
def kube() -> Iterator[Kube]:
    kubectl, helm = find_tool("kubectl"), find_tool("helm")
    external = os.environ.get("NOVACRON_E2E_KUBECONFIG")
    if external:
        if not kubectl or not helm:
            pytest.skip("kubectl and helm binaries are needed (make k8s-bin or PATH)")
        yield Kube(Path(external), kubectl, helm, None, "")
        return
    try:
        from novacron_operator import devcluster
    except ImportError as exc:  # pragma: no cover - the operator package ships with the repo
        pytest.skip(f"novacron_operator.devcluster unavailable: {exc}")
    cluster = devcluster.up()
    try:
        bins = cluster.bins
        yield Kube(
            cluster.kubeconfig,
            str(bins / "kubectl"),
            str(bins / "helm"),
            cluster.dir / "ca.crt",
            cluster.server,
        )
    finally:
        cluster.stop()


def wait_for(what: str, ok: Any, timeout: float = 90) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = ok()
        if last:
            return last
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what} (last: {last})")


def wait_established(kube: Kube, crd: str) -> None:
    def established() -> bool:
        conditions = kube.get("crd", crd).get("status", {}).get("conditions") or []
        return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)

    wait_for(f"CRD {crd} Established", established, timeout=60)


@pytest.fixture(scope="session")
def novacron_crds(kube: Kube) -> None:
    """The chart's CRDs (a copy of crds/), applied first as Helm's crds/ step does."""
    kube.kubectl("apply", "--server-side", "-f", str(CHART / "crds"))
    for kind in NOVACRON_KINDS:
        wait_established(kube, f"{kind}.novacron.io")
