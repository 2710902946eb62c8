"""e2e fixtures: a real Kubernetes API server (the local control plane, started once per
session, or any cluster named by NOVACRON_E2E_KUBECONFIG / KUBECONFIG) and the operator as a
real subprocess running under its own ServiceAccount token."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml
from novacron_operator.builders.rbac import operator_rbac
from novacron_operator.devcluster import DevCluster, bin_dir, up

ROOT = Path(__file__).resolve().parents[1]
T = TypeVar("T")


def wait_for(what: str, fn: Callable[[], T | None], timeout: float = 60, every: float = 0.5) -> T:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = fn()
            if last:
                return last
        except Exception as e:  # transient API errors while things settle
            last = e
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")


@dataclass
class Kubectl:
    binary: str
    kubeconfig: Path

    def run(
        self,
        *args: str,
        stdin: str | None = None,
        check: bool = True,
        kubeconfig: Path | None = None,
    ) -> subprocess.CompletedProcess[str]:
        cmd = [self.binary, "--kubeconfig", str(kubeconfig or self.kubeconfig), *args]
        out = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=60)
        if check and out.returncode != 0:
            raise AssertionError(f"{' '.join(args)} failed: {out.stderr}")
        return out

    def json(self, *args: str) -> Any:
        return json.loads(self.run(*args, "-o", "json").stdout)

    def apply(self, objs: list[dict[str, Any]] | dict[str, Any], ns: str | None = None) -> None:
        items = objs if isinstance(objs, list) else [objs]
        extra = ["-n", ns] if ns else []
        self.run(
            "apply",
            "--server-side",
            "--field-manager=e2e",
            *extra,
            "-f",
            "-",
            stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": items}),
        )

    def get(self, kind: str, name: str, ns: str) -> dict[str, Any] | None:
        out = self.run("get", kind, name, "-n", ns, "-o", "json", check=False)
        return json.loads(out.stdout) if out.returncode == 0 else None


@pytest.fixture(scope="session")
def kubectl() -> Iterator[Kubectl]:
    external = os.environ.get("NOVACRON_E2E_KUBECONFIG") or os.environ.get("KUBECONFIG")
    cluster: DevCluster | None = None
    if external:
        binary = shutil.which("kubectl") or str(bin_dir() / "kubectl")
        kc = Path(external)
    else:
        start = time.monotonic()
        cluster = up()
        print(f"\nlocal control plane ready in {time.monotonic() - start:.1f}s")
        binary, kc = str(cluster.bins / "kubectl"), cluster.kubeconfig
    k = Kubectl(binary, kc)
    try:
        k.run("apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds"))
        k.run("wait", "--for=condition=Established", "--timeout=60s", "-f", str(ROOT / "crds"))
        yield k
    finally:
        if cluster is not None:
            cluster.stop()


def make_namespace(k: Kubectl, name: str, enforce: str) -> str:
    k.apply(
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {
                "name": name,
                "labels": {
                    "pod-security.kubernetes.io/enforce": enforce,
                    "pod-security.kubernetes.io/enforce-version": "latest",
                    "pod-security.kubernetes.io/warn": "restricted",
                    "pod-security.kubernetes.io/audit": "restricted",
                },
            },
        }
    )
    return name


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Operator:
    """One `python -m novacron_operator` process, authenticated as its ServiceAccount."""

    k: Kubectl
    namespace: str
    agent_namespace: str
    kubeconfig: Path
    log_dir: Path
    identity: str
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    env: dict[str, str] = field(default_factory=dict)
    # kwok's pods run no node: without real nodes beside them, no admin API to call
    manage_members: bool = False

    def start(self) -> Operator:
        log = open(self.log_dir / f"{self.identity}.log", "ab")  # noqa: SIM115
        env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"} | self.env
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "novacron_operator",
                "-n",
                self.namespace,
                "--agent-namespace",
                self.agent_namespace,
                "--kubeconfig",
                str(self.kubeconfig),
                "--health-host",
                "127.0.0.1",
                "--health-port",
                str(self.port),
                "--resync",
                "10",
                "--lease-seconds",
                "6",
                "--identity",
                self.identity,
                *([] if self.manage_members else ["--no-member-management"]),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=ROOT,
        )
        log.close()
        wait_for(
            f"{self.identity} healthz", lambda: self.metrics() is not None or self.exited(), 30
        )
        return self

    def exited(self) -> bool:
        return self.proc is None or self.proc.poll() is not None

    def metrics(self) -> dict[str, float] | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=2) as r:
                text = r.read().decode()
        except OSError:
            return None
        out: dict[str, float] = {}
        for line in text.splitlines():
            if line.startswith("novacron_operator_"):
                key, _, value = line.rpartition(" ")
                out[key] = float(value)
        return out

    def reconciles(self) -> float:
        m = self.metrics() or {}
        return sum(v for k, v in m.items() if k.startswith("novacron_operator_reconciles_total"))

    def log(self) -> str:
        return (self.log_dir / f"{self.identity}.log").read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc is None:
            return 0
        self.proc.send_signal(sig)
        try:
            code = self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self.proc = None
        return code


def token_kubeconfig(k: Kubectl, ns: str, path: Path) -> Path:
    token = k.run("create", "token", "novacron-operator", "-n", ns, "--duration=2h").stdout.strip()
    raw = k.json("config", "view", "--raw", "--minify")
    cluster = raw["clusters"][0]
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "operator",
                "clusters": [cluster],
                "users": [{"name": "operator", "user": {"token": token}}],
                "contexts": [
                    {
                        "name": "operator",
                        "context": {"cluster": cluster["name"], "user": "operator"},
                    }
                ],
            }
        )
    )
    path.chmod(0o600)
    return path


@dataclass
class Deployment:
    k: Kubectl
    ns: str
    agent_ns: str
    token_kc: Path
    log_dir: Path
    operators: list[Operator]
    manage_members: bool = False
    env: dict[str, str] = field(default_factory=dict)  # every operator's extra environment

    def new_operator(self, identity: str, env: dict[str, str] | None = None) -> Operator:
        op = Operator(self.k, self.ns, self.agent_ns, self.token_kc, self.log_dir, identity)
        op.env = {**self.env, **(env or {})}
        op.manage_members = self.manage_members
        self.operators.append(op)
        return op.start()


@pytest.fixture(scope="module")
def deployment(kubectl: Kubectl) -> Iterator[Deployment]:
    """Restricted namespace for nodes/gateways, privileged one for agents, RBAC, and one
    operator running as its ServiceAccount (pods only: kwok's pods run no node)."""
    with deployed(kubectl) as dep:
        dep.new_operator("op-a")
        yield dep


@contextlib.contextmanager
def deployed(
    kubectl: Kubectl, manage_members: bool = False, env: dict[str, str] | None = None
) -> Iterator[Deployment]:
    """Namespaces, RBAC and the operator's token; operators are started by the caller."""
    suffix = str(int(time.time() * 1000))[-6:]
    ns = make_namespace(kubectl, f"novacron-e2e-{suffix}", "restricted")
    agent_ns = make_namespace(kubectl, f"novacron-agents-{suffix}", "privileged")
    kubectl.apply(operator_rbac(ns, agent_ns))
    log_dir = Path(tempfile.mkdtemp(prefix="novacron-e2e-"))
    kc = token_kubeconfig(kubectl, ns, log_dir / "operator.kubeconfig")
    dep = Deployment(kubectl, ns, agent_ns, kc, log_dir, [], manage_members, env or {})
    try:
        yield dep
    finally:
        # regions hold a finalizer for their agents: let a live operator release them first
        if not any(not op.exited() for op in dep.operators):
            dep.new_operator("cleanup")
        kubectl.run("delete", "novacron", "--all", "-n", ns, "--timeout=60s", check=False)
        for op in dep.operators:
            op.stop()
        for log in sorted(log_dir.glob("*.log")):
            bad = [ln for ln in log.read_text().splitlines() if '"level": "info"' not in ln]
            if bad:
                print(f"\n{log.name}: {len(bad)} non-info lines, last ones:")
                print("\n".join(ln[:500] for ln in bad[-12:]))
        kubectl.run("delete", "namespace", ns, agent_ns, "--wait=false", check=False)
        shutil.rmtree(log_dir, ignore_errors=True)


# the real-node cluster (one per session, started by the first test that asks for it)
from realcluster import real  # noqa: E402, F401
