"""One kubelet and its containerd: the config files of a single real node.

Several nodes can share the host (one per region, for multi-region tests): each has its own
containerd (a kubelet kills every sandbox of its runtime it does not know, so two kubelets
must not share one), kubelet root, cgroup subtree, port and slice of the pod range on the
same bridge; they share the node IP, so one kube-proxy and one kube-router (which treats the
pods whose hostIP is its node IP as its own) serve them all."""

from __future__ import annotations

import ipaddress
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from novacron_operator.realnode import addons, host

# node i serves region REGIONS[i] (zone <region>-a): the examples' three regions
REGIONS = ("us-east", "eu-west", "ap-south")


@dataclass(frozen=True)
class Kubelet:
    index: int
    address: str  # the shared node IP
    port: int  # the kubelet's API (the API server reaches logs/exec through it)
    healthz_port: int

    @property
    def name(self) -> str:
        return f"novacron-node-{self.index}"

    @property
    def region(self) -> str:
        return REGIONS[self.index % len(REGIONS)]

    @property
    def labels(self) -> dict[str, str]:
        return {
            "topology.kubernetes.io/region": self.region,
            "topology.kubernetes.io/zone": f"{self.region}-a",
        }

    @property
    def dir(self) -> Path:
        return host.RUN_ROOT / f"node-{self.index}"

    @property
    def socket(self) -> Path:
        return self.dir / "containerd" / "containerd.sock"

    def path(self, name: str) -> Path:
        return self.dir / "config" / name

    def pod_range(self) -> tuple[str, str]:
        """This node's slice of the pod subnet: 10.77.<i+1>.1-254."""
        base = int(host.POD_CIDR.network_address) + 256 * (self.index + 1)
        return str(ipaddress.IPv4Address(base + 1)), str(ipaddress.IPv4Address(base + 254))

    def containerd_toml(self) -> str:
        c = self.dir / "containerd"
        return f"""\
version = 2
root = "{c / "root"}"
state = "{c / "state"}"
disabled_plugins = ["io.containerd.internal.v1.opt", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.aufs", "io.containerd.tracing.processor.v1.otlp"]
[grpc]
  address = "{self.socket}"
[ttrpc]
  address = "{c / "containerd.ttrpc.sock"}"
[debug]
  level = "warn"
[metrics]
  address = ""
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{addons.PAUSE_IMAGE}"
  # root here lacks CAP_SYS_RESOURCE: runc must not lower oom_score_adj below ours
  restrict_oom_score_adj = true
  # network namespaces under our state dir, not the host's /var/run/netns
  netns_mounts_under_state_dir = true
  enable_selinux = false
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "{shutil.which("runc") or "runc"}"
        Root = "{c / "runc"}"
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{self.dir / "cni/net.d"}"
"""

    def cni(self) -> dict[str, Any]:
        start, end = self.pod_range()
        return {
            "cniVersion": "1.0.0",
            "name": "novacron-realnode",
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": host.BRIDGE,
                    "isGateway": True,
                    "ipMasq": False,  # nothing leaves the machine: no masquerade, no egress
                    "hairpinMode": True,  # a pod reaching itself through its Service
                    "ipam": {
                        "type": "host-local",
                        "dataDir": str(self.dir / "cni/ipam"),
                        "ranges": [
                            [
                                {
                                    "subnet": str(host.POD_CIDR),
                                    "rangeStart": start,
                                    "rangeEnd": end,
                                    "gateway": host.GATEWAY,
                                }
                            ]
                        ],
                        "routes": [{"dst": "0.0.0.0/0"}],
                    },
                }
            ],
        }

    def config(self, ca: Path) -> dict[str, Any]:
        d = self.dir / "config"
        return {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "failCgroupV1": False,  # the host runs cgroup v1 (hybrid)
            "cgroupDriver": "cgroupfs",
            "cgroupRoot": f"/{host.CGROUP_ROOT}/node-{self.index}",
            "containerRuntimeEndpoint": f"unix://{self.socket}",
            "address": self.address,
            "port": self.port,
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": self.healthz_port,
            "tlsCertFile": str(d / "kubelet-serving.crt"),
            "tlsPrivateKeyFile": str(d / "kubelet-serving.key"),
            "authentication": {
                "anonymous": {"enabled": False},
                "webhook": {"enabled": True},
                "x509": {"clientCAFile": str(ca)},
            },
            "authorization": {"mode": "Webhook"},
            "clusterDNS": [host.DNS_SERVICE_IP],
            "clusterDomain": "cluster.local",
            "resolvConf": str(d / "resolv.conf"),
            "podLogsDir": str(self.dir / "pod-logs"),
            "failSwapOn": False,
            # a shared dev machine: evict only when really out of room, never GC images
            "evictionHard": {
                "memory.available": "100Mi",
                "nodefs.available": "1%",
                "imagefs.available": "1%",
                "nodefs.inodesFree": "1%",
            },
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "serializeImagePulls": False,
            # ConfigMap/Secret changes reach mounted volumes within seconds, not a minute
            "syncFrequency": "5s",
            "nodeStatusUpdateFrequency": "5s",
            "shutdownGracePeriod": "0s",
            "maxPods": 110,
        }

    def args(self, binary: Path) -> list[str]:
        labels = ",".join(f"{k}={v}" for k, v in self.labels.items())
        return [
            str(binary),
            f"--config={self.path('kubelet.json')}",
            f"--kubeconfig={self.path('kubelet.kubeconfig')}",
            f"--hostname-override={self.name}",
            f"--node-ip={self.address}",
            f"--node-labels={labels}",
            f"--root-dir={self.dir / 'kubelet'}",
            f"--cert-dir={self.dir / 'kubelet' / 'pki'}",
            "--v=1",
        ]
