"""Argo CD run for real beside the local control plane: the application controller, the
repo server and the ApplicationSet controller (one binary built from the Go module proxy by
e2e/argocd/build.sh), Redis from Debian, and a git repository served by `git daemon` on
loopback. No UI, no API server: the test reads what Argo CD writes into its Application
objects, as `argocd app get` would show it.

Running outside a cluster needs (docs/argocd.md): ARGOCD_FAKE_IN_CLUSTER so the
kubernetes.default.svc destination uses KUBECONFIG, a plaintext repo server, the
git-verify wrapper on PATH, argocd-cm/argocd-secret labelled part-of=argocd, the default
AppProject, and TMPDIR for the repo server's checkouts."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from realcluster import ROOT, Real

NS = "argocd"
UPSTREAM = "https://github.com/novacron/novacron.git"
# what the repository holds: the paths the ApplicationSets point at, plus themselves
REPO_PATHS = ("argocd", "charts", "manifests", "crds")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def argocd_dir() -> Path:
    out = subprocess.run(
        ["bash", str(ROOT / "e2e" / "argocd" / "build.sh")],
        capture_output=True,
        text=True,
        timeout=3600,
    )
    if out.returncode != 0:
        raise AssertionError(f"e2e/argocd/build.sh failed:\n{out.stderr[-3000:]}")
    return Path(out.stdout.strip().splitlines()[-1])


def git(cwd: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "e2e",
        "GIT_AUTHOR_EMAIL": "e2e@novacron.invalid",
        "GIT_COMMITTER_NAME": "e2e",
        "GIT_COMMITTER_EMAIL": "e2e@novacron.invalid",
    }
    out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise AssertionError(f"git {' '.join(args)}: {out.stderr}")
    return out.stdout


@dataclass
class GitServer:
    """A bare repository with the project's deploy files, served on loopback."""

    root: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"git://127.0.0.1:{self.port}/novacron.git"

    @property
    def work(self) -> Path:
        return self.root / "work"

    def start(self) -> GitServer:
        bare = self.root / "novacron.git"
        git(self.root, "init", "-q", "--bare", "-b", "main", str(bare))
        self.work.mkdir()
        git(self.work, "init", "-q", "-b", "main")
        for p in REPO_PATHS:
            shutil.copytree(ROOT / p, self.work / p)
        self.commit("the deploy files of this checkout")
        self.proc = subprocess.Popen(
            [
                "git",
                "daemon",
                "--reuseaddr",
                "--export-all",
                f"--base-path={self.root}",
                "--listen=127.0.0.1",
                f"--port={self.port}",
                str(self.root),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port)):
                return self
            time.sleep(0.1)
        raise AssertionError("git daemon did not listen")

    def commit(self, message: str) -> str:
        git(self.work, "add", "-A")
        git(self.work, "commit", "-q", "-m", message)
        git(self.work, "push", "-q", str(self.root / "novacron.git"), "HEAD:main")
        return git(self.work, "rev-parse", "HEAD").strip()

    def stop(self) -> None:
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(10)


@dataclass
class ArgoCD:
    real: Real
    bin_dir: Path
    work: Path
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def _tools(self) -> Path:
        """`kustomize` for the repo server (the CRDs Application is a kustomization): the
        kustomize built into our kubectl, behind the command line Argo CD calls."""
        tools = self.work / "bin"
        tools.mkdir(exist_ok=True)
        wrapper = tools / "kustomize"
        kubectl = self.real.bins / "kubectl"
        wrapper.write_text(
            "#!/bin/sh\n"
            f'if [ "$1" = build ]; then shift; exec {kubectl} kustomize "$@"; fi\n'
            'if [ "$1" = version ]; then echo v5.7.1; exit 0; fi\n'
            'echo "kustomize: only build and version are provided" >&2; exit 2\n'
        )
        wrapper.chmod(0o755)
        return tools

    def _spawn(self, name: str, args: list[str], env: dict[str, str] | None = None) -> None:
        log = open(self.work / f"{name}.log", "wb")  # noqa: SIM115 - the child owns it
        path = f"{self._tools()}:{self.bin_dir}:{self.real.bins}:{os.environ.get('PATH', '')}"
        full_env = {
            **os.environ,
            "PATH": path,
            "KUBECONFIG": str(self.real.kubeconfig),
            "TMPDIR": str(self.work / "tmp"),
            "ARGOCD_GPG_ENABLED": "false",
            **(env or {}),
        }
        self.procs[name] = subprocess.Popen(
            args,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=full_env,
            start_new_session=True,
            cwd=self.work,
        )
        log.close()

    def _argocd(self, name: str, *args: str, env: dict[str, str] | None = None) -> None:
        binary = str(self.bin_dir / "argocd")
        self._spawn(name, [binary, *args], {"ARGOCD_BINARY_NAME": name, **(env or {})})

    def install(self) -> None:
        """Argo CD's CRDs, namespace, settings and the in-cluster destination (labelled
        for the dev ApplicationSet's cluster generator)."""
        r = self.real
        r.run("apply", "--server-side", "--force-conflicts", "-k", str(self.bin_dir / "crds"))
        crds = [f"crd/{k}.argoproj.io" for k in ("applications", "applicationsets", "appprojects")]
        deadline = time.monotonic() + 60
        while (
            r.run(
                "wait", "--for=condition=Established", "--timeout=5s", *crds, check=False
            ).returncode
            != 0
        ):
            # right after creation a CRD has no conditions yet, and `kubectl wait` errors
            assert time.monotonic() < deadline, "Argo CD's CRDs not Established in 60s"
            time.sleep(1)
        part_of = {"app.kubernetes.io/part-of": "argocd"}
        r.apply(
            [
                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}},
                {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": {"name": "argocd-cm", "namespace": NS, "labels": part_of},
                    # look again every 5 s instead of every 3 min (a webhook's job in prod)
                    "data": {"timeout.reconciliation": "5s"},
                },
                {
                    "apiVersion": "v1",
                    "kind": "Secret",
                    "metadata": {"name": "argocd-secret", "namespace": NS, "labels": part_of},
                    "stringData": {"server.secretkey": "e2e-not-secret"},
                },
                {
                    "apiVersion": "argoproj.io/v1alpha1",
                    "kind": "AppProject",
                    "metadata": {"name": "default", "namespace": NS},
                    "spec": {
                        "sourceRepos": ["*"],
                        "destinations": [{"server": "*", "namespace": "*"}],
                        "clusterResourceWhitelist": [{"group": "*", "kind": "*"}],
                    },
                },
                {
                    "apiVersion": "v1",
                    "kind": "Secret",
                    "metadata": {
                        "name": "in-cluster",
                        "namespace": NS,
                        "labels": {
                            "argocd.argoproj.io/secret-type": "cluster",
                            "novacron.io/environment": "dev",
                        },
                    },
                    "stringData": {
                        "name": "in-cluster",
                        "server": "https://kubernetes.default.svc",
                        "config": '{"tlsClientConfig": {"insecure": false}}',
                    },
                },
            ]
        )

    def start(self, redis_port: int | None = None) -> ArgoCD:
        (self.work / "tmp").mkdir(parents=True, exist_ok=True)
        wrapper = self.bin_dir / "git-verify-wrapper.sh"
        assert os.access(wrapper, os.X_OK), wrapper
        redis_port = redis_port or free_port()
        self._spawn(
            "redis",
            [
                shutil.which("redis-server") or "redis-server",
                "--bind",
                "127.0.0.1",
                "--port",
                str(redis_port),
                "--save",
                "",
                "--appendonly",
                "no",
            ],
        )
        redis = f"127.0.0.1:{redis_port}"
        repo_port = free_port()
        self._argocd(
            "argocd-repo-server",
            "--disable-tls",
            "--client-ca-path",
            "",
            "--address",
            "127.0.0.1",
            "--port",
            str(repo_port),
            "--metrics-address",
            "127.0.0.1",
            "--metrics-port",
            str(free_port()),
            "--redis",
            redis,
            "--loglevel",
            "warn",
        )
        repo = f"127.0.0.1:{repo_port}"
        self._argocd(
            "argocd-application-controller",
            "--namespace",
            NS,
            "--repo-server",
            repo,
            "--repo-server-plaintext",
            "--redis",
            redis,
            "--metrics-port",
            str(free_port()),
            # each resource's health in the Application's status, as before v3 (the test
            # reads the NovaCronRegion's, computed by our Lua check)
            "--persist-resource-health=true",
            "--status-processors",
            "4",
            "--operation-processors",
            "2",
            "--loglevel",
            "warn",
            env={"ARGOCD_FAKE_IN_CLUSTER": "true"},
        )
        self._argocd(
            "argocd-applicationset-controller",
            "--namespace",
            NS,
            "--argocd-repo-server",
            repo,
            "--repo-server-plaintext",
            "--metrics-addr",
            f"127.0.0.1:{free_port()}",
            "--probe-addr",
            f"127.0.0.1:{free_port()}",
            "--webhook-addr",
            f"127.0.0.1:{free_port()}",
            "--loglevel",
            "warn",
        )
        time.sleep(1)
        self.check_alive()
        return self

    def check_alive(self) -> None:
        for name, p in self.procs.items():
            if p.poll() is not None:
                raise AssertionError(f"{name} exited {p.returncode}:\n{self.log(name)[-3000:]}")

    def log(self, name: str) -> str:
        return (self.work / f"{name}.log").read_text(errors="replace")

    def stop(self) -> None:
        for p in self.procs.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGTERM)
        for p in self.procs.values():
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGKILL)
                p.wait()

    def app(self, name: str) -> dict[str, Any] | None:
        out = self.real.run("get", "application", name, "-n", NS, "-o", "json", check=False)
        if out.returncode != 0:
            return None
        doc: dict[str, Any] = yaml.safe_load(out.stdout)
        return doc


def argocd_objects(kubectl: str, repo_url: str) -> list[dict[str, Any]]:
    """The repository's argocd/ kustomization as `kubectl apply -k argocd/` would apply
    it, pointed at our git server instead of GitHub (as a fork's would be)."""
    rendered = subprocess.run(
        [kubectl, "kustomize", str(ROOT / "argocd")], capture_output=True, text=True
    )
    text = rendered.stdout if rendered.returncode == 0 else ""
    if not text:
        raise AssertionError(f"kubectl kustomize argocd/: {rendered.stderr}")
    return [d for d in yaml.safe_load_all(text.replace(UPSTREAM, repo_url)) if d]
