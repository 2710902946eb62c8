"""A real local Kubernetes control plane for tests and demos (no Docker needed).

etcd + kube-apiserver (own CA, serving cert, service-account keys, admin client cert,
PodSecurity admission) + controller-manager + scheduler + kwok playing kubelet for six
fake nodes across three regions and two zones each. Binaries come from e2e/k8s/build.sh.
With ``--real-node``, one real node (kubelet, containerd, CNI, kube-proxy, CoreDNS) runs
the pods instead of kwok (realnode/, docs/real-node.md); kwok stays for scale runs.

    python -m novacron_operator.devcluster up [--real-node [--nodes=3]]  # prints KUBECONFIG
    python -m novacron_operator.devcluster down   # stops it and removes everything it made
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

if TYPE_CHECKING:
    from novacron_operator.realnode import RealNode

REGIONS = {"us-east": ("a", "b"), "eu-west": ("a", "b"), "ap-south": ("a", "b")}
BUILD_SCRIPT = Path(__file__).resolve().parents[2] / "e2e" / "k8s" / "build.sh"
STATE_FILE = Path(tempfile.gettempdir()) / "novacron-devcluster.json"
REAL_STATE_FILE = Path(tempfile.gettempdir()) / "novacron-devcluster-realnode.json"
SERVICE_CIDR = "10.96.0.0/16"
KWOK_STAGES = (
    "node/fast/node-initialize.yaml",
    "node/heartbeat-with-lease/node-heartbeat-with-lease.yaml",
    "pod/fast/pod-ready.yaml",
    "pod/fast/pod-complete.yaml",
    "pod/fast/pod-delete.yaml",
    # kwok also plays the volume provisioner, so StatefulSet PVCs bind without a real disk
    "volume/fast/pvc-provision.yaml",
    "volume/fast/pv-bind.yaml",
    "volume/fast/pv-delete.yaml",
    "volume/fast/pvc-delete.yaml",
)


def bin_dir() -> Path:
    """The versioned binary cache, building whatever is missing (a no-op once built)."""
    env = os.environ.get("NOVACRON_K8S_BIN")
    if env:
        return Path(env)
    out = subprocess.run(["bash", str(BUILD_SCRIPT)], check=True, capture_output=True, text=True)
    return Path(out.stdout.strip().splitlines()[-1])


def free_port(address: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((address, 0))
        port: int = s.getsockname()[1]
        return port


def _pem_key(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _cert(
    subject: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Name,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    ca: bool = False,
    sans: list[x509.GeneralName] | None = None,
    client: bool = False,
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    b = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if sans:
        b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    if not ca:
        usage = (
            x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH
            if client
            else (x509.oid.ExtendedKeyUsageOID.SERVER_AUTH)
        )
        b = b.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    return b.sign(issuer_key, hashes.SHA256())


def write_pki(d: Path, extra_ips: Sequence[str] = ()) -> None:
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "novacron-dev-ca")])
    ca = _cert(ca_name, ca_key, ca_name, ca_key, ca=True)
    srv_key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = [
        x509.DNSName("localhost"),
        x509.DNSName("kubernetes"),
        x509.DNSName("kubernetes.default.svc"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(ipaddress.ip_address("10.96.0.1")),
        *(x509.IPAddress(ipaddress.ip_address(ip)) for ip in extra_ips),
    ]
    srv = _cert(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]),
        srv_key,
        ca_name,
        ca_key,
        sans=sans,
    )
    adm_key = ec.generate_private_key(ec.SECP256R1())
    adm = _cert(
        x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:masters"),
                x509.NameAttribute(NameOID.COMMON_NAME, "admin"),
            ]
        ),
        adm_key,
        ca_name,
        ca_key,
        client=True,
    )
    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = serialization.Encoding.PEM
    files = {
        "ca.crt": ca.public_bytes(pem),
        "ca.key": _pem_key(ca_key),
        "apiserver.crt": srv.public_bytes(pem),
        "apiserver.key": _pem_key(srv_key),
        "admin.crt": adm.public_bytes(pem),
        "admin.key": _pem_key(adm_key),
        "sa.key": _pem_key(sa_key),
        "sa.pub": sa_key.public_key().public_bytes(
            pem, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
    }
    for name, data in files.items():
        (d / name).write_bytes(data)
        (d / name).chmod(0o600)


def issue_cert(
    d: Path,
    out: Path,
    cn: str,
    orgs: Sequence[str],
    *,
    client: bool = False,
    ips: Sequence[str] = (),
) -> None:
    """``out``.crt/.key signed by the cluster CA in ``d`` (for a kubelet's identities)."""
    ca_key = serialization.load_pem_private_key((d / "ca.key").read_bytes(), None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    ca = x509.load_pem_x509_certificate((d / "ca.crt").read_bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs]
    sans: list[x509.GeneralName] = [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
    cert = _cert(
        x509.Name([*attrs, x509.NameAttribute(NameOID.COMMON_NAME, cn)]),
        key,
        ca.subject,
        ca_key,
        client=client,
        sans=sans or None,
    )
    out.with_suffix(".crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    out.with_suffix(".key").write_bytes(_pem_key(key))
    out.with_suffix(".key").chmod(0o600)


def kubeconfig(d: Path, server: str, cert: Path | None = None, user: str = "admin") -> str:
    cert = cert or d / "admin"
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "current-context": "novacron-dev",
            "clusters": [
                {
                    "name": "novacron-dev",
                    "cluster": {"server": server, "certificate-authority": str(d / "ca.crt")},
                }
            ],
            "users": [
                {
                    "name": user,
                    "user": {
                        "client-certificate": str(cert.with_suffix(".crt")),
                        "client-key": str(cert.with_suffix(".key")),
                    },
                }
            ],
            "contexts": [
                {"name": "novacron-dev", "context": {"cluster": "novacron-dev", "user": user}}
            ],
        }
    )


def node_manifest(name: str, region: str, zone: str) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {"kwok.x-k8s.io/node": "fake"},
            "labels": {
                "type": "kwok",
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "topology.kubernetes.io/region": region,
                "topology.kubernetes.io/zone": f"{region}-{zone}",
            },
        },
        "status": {
            "allocatable": {"cpu": "32", "memory": "256Gi", "pods": "110"},
            "capacity": {"cpu": "32", "memory": "256Gi", "pods": "110"},
        },
    }


@dataclass
class DevCluster:
    dir: Path
    bins: Path
    pids: dict[str, int] = field(default_factory=dict)
    api_port: int = 0
    node: RealNode | None = None  # None: kwok plays the kubelet

    @property
    def kubeconfig(self) -> Path:
        return self.dir / "kubeconfig"

    @property
    def address(self) -> str:
        """Where the API server listens: pods of a real node must reach it (and the
        ``kubernetes`` Service's endpoint must not be loopback), kwok's need not."""
        return self.node.address if self.node else "127.0.0.1"

    @property
    def server(self) -> str:
        return f"https://{self.address}:{self.api_port}"

    def _spawn(self, name: str, args: list[str]) -> None:
        log = open(self.dir / f"{name}.log", "wb")  # noqa: SIM115 - child owns it
        proc = subprocess.Popen(
            [str(self.bins / args[0]), *args[1:]],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=self.dir,
        )
        log.close()
        self.pids[name] = proc.pid
        if self.node is not None:
            self.node.track(name, proc.pid, str(self.bins / args[0]))

    def kubectl(self, *args: str, stdin: str | None = None) -> str:
        out = subprocess.run(
            [str(self.bins / "kubectl"), "--kubeconfig", str(self.kubeconfig), *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
        )
        if out.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)}: {out.stderr.strip()}")
        return out.stdout

    def _ctx(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.dir / "ca.crt"))
        ctx.load_cert_chain(str(self.dir / "admin.crt"), str(self.dir / "admin.key"))
        return ctx

    def _wait(self, what: str, ok: object, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                if callable(ok) and ok():
                    return
            except Exception:
                pass
            time.sleep(0.25)
        raise TimeoutError(f"{what} not ready after {timeout}s; logs in {self.dir}")

    def _check_alive(self) -> None:
        for name, pid in self.pids.items():
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done = 0  # not our child (CLI `down` from another process)
            if done:
                tail = (self.dir / f"{name}.log").read_text(errors="replace")[-3000:]
                raise RuntimeError(f"{name} exited early:\n{tail}")

    def _readyz(self) -> bool:
        with urllib.request.urlopen(f"{self.server}/readyz", context=self._ctx(), timeout=2) as r:
            return bool(r.status == 200)

    def start(self) -> None:
        from novacron_operator.realnode import host

        service_cidr = str(host.SERVICE_CIDR) if self.node else SERVICE_CIDR
        write_pki(self.dir, [self.address, host.KUBERNETES_SERVICE_IP] if self.node else [])
        etcd_port, peer_port = free_port(), free_port()
        # a real node's pods reach the API server through the kubernetes Service, and
        # NetworkPolicies (the chart's among them) allow egress to it by its usual port
        self.api_port = 6443 if self.node else free_port(self.address)
        self.kubeconfig.write_text(kubeconfig(self.dir, self.server))
        self.kubeconfig.chmod(0o600)
        d = self.dir
        self._spawn(
            "etcd",
            [
                "etcd",
                "--data-dir",
                str(d / "etcd"),
                "--name",
                "default",
                "--listen-client-urls",
                f"http://127.0.0.1:{etcd_port}",
                "--advertise-client-urls",
                f"http://127.0.0.1:{etcd_port}",
                "--listen-peer-urls",
                f"http://127.0.0.1:{peer_port}",
                "--initial-advertise-peer-urls",
                f"http://127.0.0.1:{peer_port}",
                "--initial-cluster",
                f"default=http://127.0.0.1:{peer_port}",
                "--unsafe-no-fsync",
                "--log-level",
                "warn",
            ],
        )
        self._spawn(
            "kube-apiserver",
            [
                "kube-apiserver",
                f"--etcd-servers=http://127.0.0.1:{etcd_port}",
                f"--bind-address={self.address}",
                f"--advertise-address={self.address}",
                f"--secure-port={self.api_port}",
                f"--cert-dir={d}",
                f"--tls-cert-file={d / 'apiserver.crt'}",
                f"--tls-private-key-file={d / 'apiserver.key'}",
                f"--client-ca-file={d / 'ca.crt'}",
                f"--service-account-key-file={d / 'sa.pub'}",
                f"--service-account-signing-key-file={d / 'sa.key'}",
                "--service-account-issuer=https://kubernetes.default.svc",
                f"--service-cluster-ip-range={service_cidr}",
                # logs/exec/port-forward through a real kubelet (it checks the CA)
                f"--kubelet-client-certificate={d / 'admin.crt'}",
                f"--kubelet-client-key={d / 'admin.key'}",
                f"--kubelet-certificate-authority={d / 'ca.crt'}",
                # by address: the node's name resolves nowhere
                "--kubelet-preferred-address-types=InternalIP,Hostname",
                "--authorization-mode=Node,RBAC",
                "--enable-admission-plugins=PodSecurity,NodeRestriction",
                "--profiling=false",
                "--v=0",
            ],
        )
        self._wait("kube-apiserver", self._readyz, 60)
        kc = str(self.kubeconfig)
        self._spawn(
            "kube-controller-manager",
            [
                "kube-controller-manager",
                f"--kubeconfig={kc}",
                f"--authentication-kubeconfig={kc}",
                f"--authorization-kubeconfig={kc}",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                f"--secure-port={free_port()}",
                f"--root-ca-file={d / 'ca.crt'}",
                f"--service-account-private-key-file={d / 'sa.key'}",
                "--use-service-account-credentials=true",
                "--controllers=*,-nodeipam",
                "--concurrent-statefulset-syncs=10",
                "--concurrent-deployment-syncs=10",
                "--concurrent-replicaset-syncs=10",
                # client-go's defaults (20 qps, burst 30 per controller) throttle the
                # StatefulSet/ReplicaSet controllers' pod and PVC creation for hundreds of
                # workloads; large real clusters raise them the same way
                "--kube-api-qps=200",
                "--kube-api-burst=400",
                "--v=0",
            ],
        )
        self._spawn(
            "kube-scheduler",
            [
                "kube-scheduler",
                f"--kubeconfig={kc}",
                f"--authentication-kubeconfig={kc}",
                f"--authorization-kubeconfig={kc}",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                f"--secure-port={free_port()}",
                "--kube-api-qps=200",
                "--kube-api-burst=400",
                "--v=0",
            ],
        )
        if self.node is not None:
            self.node.start(self)
        else:
            self._start_kwok()
        self._wait(
            "default ServiceAccount",
            lambda: bool(
                self.kubectl("get", "serviceaccount", "default", "-n", "default", "-o", "name")
            ),
            60,
        )

    def _start_kwok(self) -> None:
        d, kc = self.dir, str(self.kubeconfig)
        stages = self.bins / "kwok-stages"
        (d / "kwok.yaml").write_text("\n---\n".join((stages / s).read_text() for s in KWOK_STAGES))
        self._spawn(
            "kwok",
            [
                "kwok",
                f"--kubeconfig={kc}",
                f"--config={d / 'kwok.yaml'}",
                "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
                "--node-lease-duration-seconds=40",
                "--cidr=10.244.0.0/16",
                f"--server-address=127.0.0.1:{free_port()}",
            ],
        )
        nodes = [node_manifest(f"kwok-{r}-{z}", r, z) for r, zs in REGIONS.items() for z in zs]
        self.kubectl(
            "apply",
            "-f",
            "-",
            stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": nodes}),
        )
        self.kubectl("apply", "-f", str(stages / "volume/fast/storage-class.yaml"))
        self._wait(
            "nodes",
            lambda: (
                self.kubectl(
                    "get",
                    "nodes",
                    "-o",
                    "jsonpath={.items[*].status.conditions[?(@.type=='Ready')].status}",
                ).split()
                == ["True"] * len(nodes)
            ),
            60,
        )

    def stop(self) -> None:
        if self.node is not None:
            self.node.stop()  # kubelet and pods first, and every host change they made
        for name in reversed(list(self.pids)):
            pid = self.pids[name]
            try:
                os.killpg(pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
        deadline = time.monotonic() + 15
        for pid in self.pids.values():
            while time.monotonic() < deadline and _alive(pid):
                time.sleep(0.1)
            if _alive(pid):
                try:
                    os.killpg(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            _reap(pid)
        self.pids.clear()
        shutil.rmtree(self.dir, ignore_errors=True)


def _alive(pid: int) -> bool:
    _reap(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def up(
    real_node: bool = False,
    owner_pid: int | None = None,
    images: Sequence[Path] = (),
    nodes: int = 1,
) -> DevCluster:
    """Start a control plane (kwok nodes, or ``nodes`` real ones: node i serves region
    us-east, eu-west, ap-south in turn). ``owner_pid``: the process whose death abandons a
    real node (the next start then cleans up after it)."""
    bins = bin_dir()
    node = None
    if real_node:
        from novacron_operator.realnode import RealNode, project_images

        node = RealNode(
            bins, owner_pid=owner_pid, images=list(images) or project_images(), nodes=nodes
        )
        node.claim()  # before the API server: it binds the node IP this adds
    cluster = DevCluster(dir=Path(tempfile.mkdtemp(prefix="novacron-k8s-")), bins=bins, node=node)
    try:
        cluster.start()
    except BaseException:
        cluster.stop()
        raise
    return cluster


def main(argv: list[str]) -> int:
    cmd = argv[1] if len(argv) > 1 else "up"
    flags = set(argv[2:])
    counts = {f for f in flags if f.startswith("--nodes=") and f[8:].isdigit()}
    if cmd == "up" and flags - counts <= {"--real-node"}:
        real = "--real-node" in flags
        nodes = int(max(counts)[8:]) if counts else 1
        state = REAL_STATE_FILE if real else STATE_FILE
        if state.exists():
            print(f"already up: {json.loads(state.read_text())['kubeconfig']}")
            return 1
        start = time.monotonic()
        c = up(real_node=real, nodes=nodes)
        state.write_text(
            json.dumps(
                {
                    "dir": str(c.dir),
                    "bins": str(c.bins),
                    "pids": c.pids,
                    "kubeconfig": str(c.kubeconfig),
                    "real_node": real,
                }
            )
        )
        print(f"ready in {time.monotonic() - start:.1f}s; export KUBECONFIG={c.kubeconfig}")
        return 0
    if cmd == "down" and not flags:
        for state in (STATE_FILE, REAL_STATE_FILE):
            if state.exists():
                _down(json.loads(state.read_text()))
                state.unlink()
        return 0
    print(__doc__)
    return 2


def _down(s: dict[str, Any]) -> None:
    node = None
    if s.get("real_node"):
        from novacron_operator.realnode import RealNode

        node = RealNode(Path(s["bins"]))
    DevCluster(dir=Path(s["dir"]), bins=Path(s["bins"]), pids=s["pids"], node=node).stop()


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
