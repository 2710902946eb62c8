"""A real Kubernetes node for the local control plane: containerd + runc (Debian's), CNI
bridge networking, kubelet and kube-proxy (nftables), CoreDNS, kube-router's NetworkPolicy
controller and the local-path volume provisioner, all on this host and without Docker.

Why each odd setting (found the hard way on these machines, see docs/real-node.md):
- ``failCgroupV1: false`` / cgroupfs: the host runs cgroup v1 (hybrid);
- ``restrict_oom_score_adj``: root here lacks CAP_SYS_RESOURCE, and runc would fail every
  sandbox trying to set the kubelet's oom_score_adj of -998;
- the node IP lives on ``lo``: kubelet refuses a loopback node IP and the kernel has no
  dummy interface; pods reach it through the bridge's gateway;
- runc, never crun (crun 1.8 refuses hybrid cgroup hosts).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from novacron_operator.realnode import addons, host
from novacron_operator.realnode.images import Image, write_archive
from novacron_operator.realnode.kubelet import Kubelet

if TYPE_CHECKING:
    from novacron_operator.devcluster import DevCluster

NODE_NAME = "novacron-node-0"  # the first node; it serves region us-east
CACHE = Path(os.environ.get("NOVACRON_CACHE", Path.home() / ".cache" / "novacron"))
PROJECT_IMAGES = CACHE / "images"
HOST_TOOLS = ("containerd", "ctr", "runc", "nft", "ip")


def free_port(address: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((address, 0))
        return int(s.getsockname()[1])


def _proc_start(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


@contextlib.contextmanager
def _locked() -> Iterator[None]:
    host.LOCK.parent.mkdir(parents=True, exist_ok=True)
    with open(host.LOCK, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def missing_prerequisites(bins: Path) -> list[str]:
    """What this host lacks for a real node (empty: everything is there)."""
    out = [t for t in HOST_TOOLS if shutil.which(t) is None]
    if not Path("/usr/lib/cni/bridge").exists():
        out.append("CNI plugins (containernetworking-plugins)")
    for b in ("kubelet", "kube-proxy", "pause"):
        if not (bins / b).exists():
            out.append(f"{b} (e2e/k8s/build.sh)")
    for pattern in ("coredns-v*", "local-path-provisioner-v*"):
        if not list(bins.glob(pattern)):
            out.append(f"{pattern[:-3]} (e2e/k8s/build.sh)")
    if os.geteuid() != 0:
        out.append("root")
    return out


@dataclass
class RealNode:
    """One real node. ``claim()`` before the control plane starts (it cleans what a crashed
    run left and puts the node IP on lo, which the API server binds), ``start()`` once the
    API server answers, ``stop()`` to undo everything."""

    bins: Path
    # the process whose exit means the node is abandoned (a test session); None for a
    # detached `devcluster up`, which lives until `devcluster down`
    owner_pid: int | None = None
    images: list[Path] = field(default_factory=list)  # docker/OCI archives to import
    network_policy: bool = True
    nodes: int = 1  # kubelets: node i serves region kubelet.REGIONS[i]
    address: str = host.NODE_IP
    state: host.State = field(default_factory=host.State)
    kubelets: list[Kubelet] = field(default_factory=list)

    @property
    def dir(self) -> Path:
        return host.RUN_ROOT

    def _binary(self, pattern: str) -> Path | None:
        found = sorted(self.bins.glob(pattern))
        return found[-1] if found else None

    # ------------------------------------------------------------------ ownership

    def claim(self, wait: float = 900) -> None:
        """Take the host's one real-node slot: clean up after a crashed run, or wait (up to
        ``wait`` seconds) while another live run holds it."""
        missing = missing_prerequisites(self.bins)
        if missing:
            raise RuntimeError(
                "a real node needs: "
                + ", ".join(missing)
                + " (run .ci/run or see docs/real-node.md)"
            )
        deadline = time.monotonic() + wait
        told = False
        while True:
            with _locked():
                old = host.State.load()
                if old is None or not self._held_by_other(old):
                    problems = host.cleanup(old, self.bins)
                    for p in problems:
                        print(f"real node cleanup: {p}", file=sys.stderr)
                    me = self.owner_pid
                    self.state = host.State(
                        owner_pid=me, owner_start=_proc_start(me) if me else None
                    )
                    self.state.save()
                    host.add_node_address()
                    host.add_bridge()
                    return
                if old.owner_pid is None:
                    raise RuntimeError(
                        f"a real-node cluster is already up ({old.cluster_dir}): "
                        "`make k8s-down` stops it"
                    )
            if time.monotonic() > deadline:
                raise TimeoutError(f"the real node is still held by pid {old.owner_pid}")
            if not told:
                print(f"waiting for the real node held by pid {old.owner_pid}", file=sys.stderr)
                told = True
            time.sleep(5)

    @staticmethod
    def _held_by_other(old: host.State) -> bool:
        if old.owner_pid is None:
            return bool(old.live())
        return host.alive(old.owner_pid) and _proc_start(old.owner_pid) == old.owner_start

    def track(self, name: str, pid: int, exe: str) -> None:
        """Record a process (control plane ones too) so a later run can stop it after a
        crash of this one."""
        self.state.pids[name] = (pid, os.path.realpath(exe))
        self.state.save()

    # ------------------------------------------------------------------ start

    def start(self, cluster: DevCluster) -> None:
        self.state.cluster_dir = str(cluster.dir)
        self.state.save()
        self.kubelets = [
            Kubelet(i, self.address, free_port(self.address), free_port())
            for i in range(self.nodes)
        ]
        (self.dir / "volumes").mkdir(parents=True, exist_ok=True)
        self._write_shared_configs(cluster)
        t0 = time.monotonic()
        for k in self.kubelets:
            self._write_node_configs(cluster, k)
            toml = str(k.path("containerd.toml"))
            self._spawn(cluster, f"containerd-{k.index}", ["containerd", "--config", toml])
        for k in self.kubelets:
            cluster._wait(f"containerd of {k.name}", k.socket.exists, 30)
        self._import_images()
        t_images = time.monotonic() - t0
        for k in self.kubelets:
            host.make_cgroup(f"node-{k.index}")
            self._spawn(cluster, f"kubelet-{k.index}", k.args(self.bins / "kubelet"))
        self._spawn(
            cluster,
            "kube-proxy",
            [str(self.bins / "kube-proxy"), f"--config={self._p('kube-proxy.json')}", "--v=1"],
        )
        cluster._wait("nodes Ready", self._nodes_ready(cluster), 90)
        router = self._binary("kube-router-v*")
        if self.network_policy and router is not None and shutil.which("ipset"):
            # after the node registered: it looks its node up once, at start
            self._spawn(cluster, "kube-router", self._kube_router_args(cluster, router))
        cluster.kubectl("apply", "-f", "-", stdin=_list(addons.coredns()))
        volumes = str(self.dir / "volumes")
        cluster.kubectl("apply", "-f", "-", stdin=_list(addons.local_path(volumes)))
        lpp = self._binary("local-path-provisioner-v*")
        assert lpp is not None
        self._spawn(
            cluster,
            "local-path-provisioner",
            [
                str(lpp),
                "start",
                f"--config={self._p('local-path.json')}",
                f"--kubeconfig={cluster.kubeconfig}",
                "--namespace=kube-system",
                f"--provisioner-name={addons.PROVISIONER}",
                f"--helper-image={addons.HELPER_IMAGE}",
                "--configmap-name=local-path-config",
                "--service-account-name=local-path-provisioner",
                f"--helper-pod-file={self._p('helper-pod.json')}",
            ],
        )
        cluster._wait(
            "cluster DNS",
            lambda: (
                "true"
                in cluster.kubectl(
                    "get",
                    "pods",
                    "-n",
                    "kube-system",
                    "-l",
                    "k8s-app=kube-dns",
                    "-o",
                    "jsonpath={.items[*].status.containerStatuses[*].ready}",
                )
            ),
            90,
        )
        names = ", ".join(k.name for k in self.kubelets)
        print(f"real nodes {names} Ready ({t_images:.1f}s of it importing images)", file=sys.stderr)

    def _p(self, name: str) -> Path:
        return self.dir / "config" / name

    def _spawn(self, cluster: DevCluster, name: str, args: list[str]) -> None:
        exe = args[0] if "/" in args[0] else shutil.which(args[0]) or args[0]
        log = open(cluster.dir / f"{name}.log", "wb")  # noqa: SIM115 - the child owns it
        env = {**os.environ, "PATH": f"{self.bins}:{os.environ.get('PATH', '/usr/bin:/bin')}"}
        proc = subprocess.Popen(
            [exe, *args[1:]],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=self.dir,
            env=env,
        )
        log.close()
        cluster.pids[name] = proc.pid
        self.track(name, proc.pid, exe)

    def _nodes_ready(self, cluster: DevCluster) -> Callable[[], bool]:
        def ready() -> bool:
            out = cluster.kubectl(
                "get",
                "nodes",
                "-o",
                "jsonpath={.items[*].status.conditions[?(@.type=='Ready')].status}",
            )
            return out.split() == ["True"] * len(self.kubelets)

        return ready

    def _import_images(self) -> None:
        """Every image into every node's containerd, all at once (ctr unpacks in parallel)."""
        infra = [
            Image(addons.PAUSE_IMAGE, {"/pause": self.bins / "pause"}, {}, ["/pause"]),
            Image(
                addons.COREDNS_IMAGE,
                {"/coredns": self._binary("coredns-v*") or self.bins / "coredns"},
                {},
                ["/coredns"],
            ),
            Image(
                addons.HELPER_IMAGE,
                {"/bin/busybox": Path(shutil.which("busybox") or "/bin/busybox")},
                {f"/bin/{t}": "busybox" for t in ("sh", "mkdir", "rm", "rmdir", "chmod", "ls")},
                ["/bin/sh"],
                user="0:0",
            ),
        ]
        archives = [write_archive(i, CACHE / "node-images") for i in infra if _has(i)]
        archives += self.images
        jobs = [
            (
                a,
                subprocess.Popen(
                    [
                        "ctr",
                        "--address",
                        str(k.socket),
                        "--namespace",
                        "k8s.io",
                        "images",
                        "import",
                        str(a),
                    ],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                ),
            )
            for k in self.kubelets
            for a in archives
        ]
        for a, p in jobs:
            out, _ = p.communicate(timeout=300)
            if p.returncode != 0:
                raise RuntimeError(f"ctr images import {a}: {out.strip()}")

    # ------------------------------------------------------------------ config files

    def _write_shared_configs(self, cluster: DevCluster) -> None:
        d = self.dir / "config"
        d.mkdir(parents=True, exist_ok=True)
        (d / "kube-proxy.json").write_text(json.dumps(self._kube_proxy_config(cluster)))
        lp = addons.local_path_config(str(self.dir / "volumes"))
        (d / "local-path.json").write_text(lp["config.json"])
        (d / "helper-pod.json").write_text(lp["helperPod.yaml"])

    def _write_node_configs(self, cluster: DevCluster, k: Kubelet) -> None:
        from novacron_operator.devcluster import issue_cert, kubeconfig

        d = k.dir / "config"
        for sub in ("config", "containerd", "kubelet", "cni/net.d", "cni/ipam", "pod-logs"):
            (k.dir / sub).mkdir(parents=True, exist_ok=True)
        issue_cert(
            cluster.dir,
            d / "kubelet-client",
            f"system:node:{k.name}",
            ["system:nodes"],
            client=True,
        )
        issue_cert(cluster.dir, d / "kubelet-serving", k.name, [], ips=[self.address])
        (d / "kubelet.kubeconfig").write_text(
            kubeconfig(cluster.dir, cluster.server, d / "kubelet-client", "kubelet")
        )
        (d / "resolv.conf").write_text("nameserver 127.0.0.1\n")  # pods' DNS is CoreDNS
        (d / "containerd.toml").write_text(k.containerd_toml())
        (k.dir / "cni/net.d/10-novacron.conflist").write_text(json.dumps(k.cni()))
        (d / "kubelet.json").write_text(json.dumps(k.config(cluster.dir / "ca.crt")))

    def _kube_proxy_config(self, cluster: DevCluster) -> dict[str, object]:
        return {
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
            "kind": "KubeProxyConfiguration",
            "mode": "nftables",
            "clientConnection": {"kubeconfig": str(cluster.kubeconfig)},
            "hostnameOverride": NODE_NAME,
            "healthzBindAddress": f"127.0.0.1:{free_port()}",
            "metricsBindAddress": f"127.0.0.1:{free_port()}",
            "clusterCIDR": str(host.POD_CIDR),
            # NodePorts on the node IP only: nothing is exposed on eth0
            "nodePortAddresses": [f"{self.address}/32"],
            # zero: leave the host's conntrack sysctls as they are
            "conntrack": {
                "maxPerCore": 0,
                "min": 0,
                "tcpEstablishedTimeout": "0s",
                "tcpCloseWaitTimeout": "0s",
            },
        }

    def _kube_router_args(self, cluster: DevCluster, router: Path) -> list[str]:
        return [
            str(router),
            f"--kubeconfig={cluster.kubeconfig}",
            # every node shares the node IP: this one instance owns all their pods
            f"--hostname-override={NODE_NAME}",
            "--run-firewall=true",
            "--run-router=false",
            "--run-service-proxy=false",
            "--enable-cni=false",
            "--enable-ipv6=false",
            f"--service-cluster-ip-range={host.SERVICE_CIDR}",
            "--health-port=0",
            "--metrics-port=0",
            "--v=1",
        ]

    # ------------------------------------------------------------------ stop

    def stop(self) -> None:
        with _locked():
            problems = host.cleanup(host.State.load(), self.bins)
        for p in problems:
            print(f"real node cleanup: {p}", file=sys.stderr)


def _has(image: Image) -> bool:
    return all(p.exists() for p in image.files.values())


def _list(items: list[dict[str, object]]) -> str:
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": items})


def project_images() -> list[Path]:
    """The NovaCron images `make images` saved (empty when it has not run)."""
    return sorted(PROJECT_IMAGES.glob("novacron*-*.tar"))
