"""The e2e fixture for real pods: the images built (buildah without Docker), imported into a
real node's containerd, and the local control plane started with that node (kubelet, CNI,
kube-proxy, CoreDNS, NetworkPolicies by kube-router, local-path volumes). One per session;
registered in conftest.py.

NOVACRON_E2E_REAL_KUBECONFIG names an existing cluster with real nodes instead (whose
nodes already have the images, e.g. kind after `kind load`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from novacron_operator.devcluster import DevCluster, bin_dir, up
from novacron_operator.realnode.node import missing_prerequisites

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Real:
    """A cluster with real nodes, and the tools to drive it."""

    kubeconfig: Path
    bins: Path
    cluster: DevCluster | None

    def run(
        self, *args: str, stdin: str | None = None, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.bins / "kubectl"), "--kubeconfig", str(self.kubeconfig), *args]
        out = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=timeout)
        if check and out.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {out.stderr.strip()}")
        return out

    def json(self, *args: str) -> Any:
        return json.loads(self.run(*args, "-o", "json").stdout)

    def pods_ready(self, ns: str, pods: list[str]) -> bool:
        """Whether every one of ``pods`` is Ready now (a short ``kubectl wait``)."""
        out = self.run(
            "wait", "-n", ns, "--for=condition=Ready", "--timeout=5s",
            *[f"pod/{p}" for p in pods], check=False,
        )  # fmt: skip
        return out.returncode == 0

    def apply(self, objs: list[dict[str, Any]]) -> None:
        doc = json.dumps({"apiVersion": "v1", "kind": "List", "items": objs})
        self.run("apply", "--server-side", "--field-manager=e2e", "-f", "-", stdin=doc)

    def helm(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.bins / "helm"), "--kubeconfig", str(self.kubeconfig), *args]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if out.returncode != 0:
            raise AssertionError(f"helm {' '.join(args)} failed: {out.stderr.strip()}")
        return out

    def plugin(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """`kubectl novacron ...` as users run it: kubectl finds kubectl-novacron on PATH."""
        venv_bin = str(Path(sys.executable).parent)
        env = {**os.environ, "PATH": f"{venv_bin}:{os.environ.get('PATH', '')}"}
        env.pop("KUBECONFIG", None)
        cmd = [str(self.bins / "kubectl"), "novacron", *args, "--kubeconfig", str(self.kubeconfig)]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
        if check and out.returncode != 0:
            raise AssertionError(f"kubectl novacron {' '.join(args)}: {out.stderr or out.stdout}")
        return out

    def exec_python(self, ns: str, pod: str, code: str, timeout: float = 30) -> str:
        return self.run(
            "exec", "-n", ns, pod, "-c", "node", "--", "python", "-c", code, timeout=timeout
        ).stdout

    def node_http(self, ns: str, pod: str, method: str, path: str, body: str = "") -> Any:
        """A node's admin/client API from inside its pod: {"status", "body"}."""
        code = (
            "import json, urllib.request, urllib.error\n"
            f"req = urllib.request.Request('http://127.0.0.1:8080{path}', method={method!r},"
            f" data={body.encode()!r} or None, headers={{'Content-Type': 'application/json'}})\n"
            "try:\n"
            "    r = urllib.request.urlopen(req, timeout=5); s, raw = r.status, r.read()\n"
            "except urllib.error.HTTPError as e:\n"
            "    s, raw = e.code, e.read()\n"
            "try:\n"
            "    b = json.loads(raw)\n"
            "except ValueError:\n"
            "    b = raw.decode(errors='replace')\n"
            "print(json.dumps({'status': s, 'body': b}))\n"
        )
        return json.loads(self.exec_python(ns, pod, code).strip().splitlines()[-1])


def build_images() -> list[Path]:
    start = time.monotonic()
    out = subprocess.run(
        ["bash", str(ROOT / "images" / "build.sh")],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if out.returncode != 0:
        raise AssertionError(f"images/build.sh failed:\n{out.stderr[-4000:]}")
    print(f"\nimages built in {time.monotonic() - start:.1f}s")
    return [Path(line) for line in out.stdout.split() if line.endswith(".tar")]


def nodes_wanted(session: pytest.Session) -> int:
    """Three real nodes (one per region) when the federation test will run, else one: each
    extra node is a kubelet and a containerd more on a 2-core machine."""
    if not any("test_real_federation" in item.nodeid for item in session.items):
        return 1
    from test_real_federation import federated_node

    return 3 if federated_node() else 1


@pytest.fixture(scope="session")
def real(request: pytest.FixtureRequest) -> Iterator[Real]:
    external = os.environ.get("NOVACRON_E2E_REAL_KUBECONFIG")
    if external:
        yield Real(Path(external), bin_dir(), None)  # our kubectl and helm
        return
    bins = bin_dir()
    missing = missing_prerequisites(bins)
    if missing:
        pytest.skip(f"real-node e2e needs {', '.join(missing)} (run .ci/run as root)")
    images = build_images()
    start = time.monotonic()
    nodes = nodes_wanted(request.session)
    cluster = up(real_node=True, owner_pid=os.getpid(), images=images, nodes=nodes)
    took = time.monotonic() - start
    print(f"local control plane with {nodes} real node(s) ready in {took:.1f}s")
    try:
        yield Real(cluster.kubeconfig, bins, cluster)
    finally:
        cluster.stop()
