"""The chart's RBAC, proven rather than guessed: the operator runs as a local process with
the chart's ServiceAccount token (the chart's own pod does not run under kwok), with the
chart's own args, and reconciles the dev example; calls outside its Roles are forbidden."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from .conftest import Kube, wait_for
from .tools import CHART, load_all, run

pytestmark = pytest.mark.e2e
NS, AGENTS = "nc-operator", "nc-operator-agents"


def token_kubeconfig(kube: Kube, path: Path, token: str) -> Path:
    assert kube.ca_file is not None
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "c",
                "cluster": {"server": kube.server, "certificate-authority": str(kube.ca_file)},
            }
        ],
        "users": [{"name": "sa", "user": {"token": token}}],
        "contexts": [{"name": "sa", "context": {"cluster": "c", "user": "sa", "namespace": NS}}],
        "current-context": "sa",
    }
    path.write_text(yaml.safe_dump(doc))
    path.chmod(0o600)
    return path


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def installed(kube: Kube, novacron_crds: None) -> list[dict[str, Any]]:
    if kube.ca_file is None:
        pytest.skip("runs the operator locally against the local control plane")
    kube.restricted_namespace(NS)
    kube.kubectl("create", "namespace", AGENTS)
    kube.kubectl("label", "namespace", AGENTS, "pod-security.kubernetes.io/enforce=privileged")
    cmd = [kube.helm_bin, "template", "novacron", str(CHART), "-n", NS, "--kube-version", "1.36.0"]
    cmd += ["-f", str(CHART / "values-dev.yaml"), "--set", f"operator.agentNamespace={AGENTS}"]
    rendered = run(cmd).stdout
    kube.kubectl("apply", "--server-side", "-f", "-", stdin=rendered)
    return load_all(rendered)


@pytest.fixture(scope="module")
def sa_kubeconfig(kube: Kube, installed: list[dict[str, Any]], tmp_path_factory: Any) -> Path:
    token = kube.kubectl("create", "token", "novacron-operator", "-n", NS, "--duration=1h").strip()
    return token_kubeconfig(kube, tmp_path_factory.mktemp("sa") / "kubeconfig", token)


@pytest.fixture(scope="module")
def operator(installed: list[dict[str, Any]], sa_kubeconfig: Path) -> Iterator[Path]:
    (dep,) = [o for o in installed if o["kind"] == "Deployment"]
    args = [
        a.replace("$(POD_NAME)", "e2e-local")
        for a in dep["spec"]["template"]["spec"]["containers"][0]["args"]
    ]
    args += ["--kubeconfig", str(sa_kubeconfig), "--health-host", "127.0.0.1"]
    args += ["--health-port", str(free_port()), "--resync", "5"]
    # kwok's pods run no node: with member management the operator would reach none and
    # (rightly) report Ready=False, reason GroupUnreachable
    args += ["--no-member-management"]
    log = sa_kubeconfig.parent / "operator.log"
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "novacron_operator", *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    try:
        yield log
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def status_of(kube: Kube, kind: str, name: str) -> dict[str, Any]:
    status: dict[str, Any] = kube.get(kind, name, "-n", NS).get("status") or {}
    return status


def test_operator_reconciles_the_example_under_the_charts_rbac(kube: Kube, operator: Path) -> None:
    def reconciled() -> bool:
        denied = [ln for ln in operator.read_text(errors="replace").splitlines() if "403" in ln]
        assert not denied, "\n".join(denied[:10])
        return all(
            status_of(kube, kind, name).get("observedGeneration")
            for kind, name in (
                ("novacroncluster", "novacron-dev"),
                ("novacronregion", "us-east"),
                ("dwcpfederation", "novacron-dev"),
            )
        )

    try:
        wait_for("the operator to report status on all three kinds", reconciled, timeout=120)

        def children() -> str:
            here = kube.kubectl("get", "statefulset,deployment,daemonset", "-n", NS, "-o", "name")
            there = kube.kubectl("get", "daemonset", "-n", AGENTS, "-o", "name")
            return here + there

        wait_for(
            "the region's StatefulSet (no gateway or agent: their commands do not exist yet)",
            lambda: "statefulset.apps/us-east" in children().split(),
            timeout=60,
        )
        have = children().split()
        assert "deployment.apps/us-east-gateway" not in have
        assert not [c for c in have if c.startswith("daemonset")]
    finally:
        log = operator.read_text(errors="replace")
        print(log[-4000:])
    forbidden = [line for line in log.splitlines() if "403" in line or "forbidden" in line.lower()]
    assert not forbidden, "\n".join(forbidden[:20])
    leases = kube.get("lease", "novacron-operator", "-n", NS)
    assert leases["spec"]["holderIdentity"] == "e2e-local"


@pytest.mark.parametrize(
    ("verb", "resource", "namespace"),
    [
        ("list", "nodes", None),
        ("list", "secrets", "kube-system"),
        ("create", "clusterroles", None),
        ("create", "pods", NS),
        ("update", "novacronregions", NS),
        ("patch", "deployments", "default"),
    ],
)
def test_calls_outside_the_role_are_forbidden(
    kube: Kube, sa_kubeconfig: Path, verb: str, resource: str, namespace: str | None
) -> None:
    cmd = [kube.kubectl_bin, "--kubeconfig", str(sa_kubeconfig), "auth", "can-i", verb, resource]
    cmd += ["-n", namespace] if namespace else []
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    assert proc.stdout.strip() == "no", (verb, resource, namespace, proc.stdout, proc.stderr)
    if verb == "list":
        out = subprocess.run(
            [kube.kubectl_bin, "--kubeconfig", str(sa_kubeconfig), "get", resource]
            + (["-n", namespace] if namespace else []),
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert "Forbidden" in out.stderr


def test_argocd_health_of_the_operators_real_status(kube: Kube, operator: Path) -> None:
    """The Lua health check reads what the operator really writes: Healthy once Ready."""
    from .test_argocd import lua_health
    from .tools import ARGOCD

    script = (ARGOCD / "health" / "novacron.lua").read_text()
    targets = (
        ("novacroncluster", "novacron-dev"),
        ("novacronregion", "us-east"),
        ("dwcpfederation", "novacron-dev"),
    )

    def healthy() -> list[str]:
        states = [lua_health(script, kube.get(k, n, "-n", NS))["status"] for k, n in targets]
        return states if states == ["Healthy"] * 3 else []

    wait_for("Argo CD health Healthy for all three kinds", healthy, timeout=120)
