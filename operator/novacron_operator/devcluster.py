"""A real local Kubernetes control plane for tests and demos (no Docker needed).

etcd + kube-apiserver (own CA, serving cert, service-account keys, admin client cert,
PodSecurity admission) + controller-manager + scheduler + kwok playing kubelet for six
fake nodes across three regions and two zones each. Binaries come from e2e/k8s/build.sh.

    python -m novacron_operator.devcluster up     # prints KUBECONFIG path, keeps running
    python -m novacron_operator.devcluster down   # stops it and removes its directory
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
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

REGIONS = {"us-east": ("a", "b"), "eu-west": ("a", "b"), "ap-south": ("a", "b")}
BUILD_SCRIPT = Path(__file__).resolve().parents[2] / "e2e" / "k8s" / "build.sh"
STATE_FILE = Path(tempfile.gettempdir()) / "novacron-devcluster.json"
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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
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


def write_pki(d: Path) -> None:
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


def kubeconfig(d: Path, server: str) -> str:
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
                    "name": "admin",
                    "user": {
                        "client-certificate": str(d / "admin.crt"),
                        "client-key": str(d / "admin.key"),
                    },
                }
            ],
            "contexts": [
                {"name": "novacron-dev", "context": {"cluster": "novacron-dev", "user": "admin"}}
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

    @property
    def kubeconfig(self) -> Path:
        return self.dir / "kubeconfig"

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.api_port}"

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
        write_pki(self.dir)
        etcd_port, peer_port = free_port(), free_port()
        self.api_port = free_port()
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
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={self.api_port}",
                f"--cert-dir={d}",
                f"--tls-cert-file={d / 'apiserver.crt'}",
                f"--tls-private-key-file={d / 'apiserver.key'}",
                f"--client-ca-file={d / 'ca.crt'}",
                f"--service-account-key-file={d / 'sa.pub'}",
                f"--service-account-signing-key-file={d / 'sa.key'}",
                "--service-account-issuer=https://kubernetes.default.svc",
                "--service-cluster-ip-range=10.96.0.0/16",
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
        self._wait(
            "default ServiceAccount",
            lambda: bool(
                self.kubectl("get", "serviceaccount", "default", "-n", "default", "-o", "name")
            ),
            60,
        )

    def stop(self) -> None:
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


def up() -> DevCluster:
    bins = bin_dir()
    cluster = DevCluster(dir=Path(tempfile.mkdtemp(prefix="novacron-k8s-")), bins=bins)
    try:
        cluster.start()
    except BaseException:
        cluster.stop()
        raise
    return cluster


def main(argv: list[str]) -> int:
    cmd = argv[1] if len(argv) > 1 else "up"
    if cmd == "up":
        if STATE_FILE.exists():
            print(f"already up: {json.loads(STATE_FILE.read_text())['kubeconfig']}")
            return 1
        start = time.monotonic()
        c = up()
        STATE_FILE.write_text(
            json.dumps(
                {
                    "dir": str(c.dir),
                    "bins": str(c.bins),
                    "pids": c.pids,
                    "kubeconfig": str(c.kubeconfig),
                }
            )
        )
        print(f"ready in {time.monotonic() - start:.1f}s; export KUBECONFIG={c.kubeconfig}")
        return 0
    if cmd == "down":
        if not STATE_FILE.exists():
            return 0
        s = json.loads(STATE_FILE.read_text())
        DevCluster(dir=Path(s["dir"]), bins=Path(s["bins"]), pids=s["pids"]).stop()
        STATE_FILE.unlink()
        return 0
    print(__doc__)
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
