"""A region's DWCP agents: ``novacron agent`` as a DaemonSet on the region's Kubernetes nodes
(hostNetwork: it measures and tunnels between hosts), its ConfigMap, ServiceAccount and,
for WireGuard tunnels, the key Secret (docs/routing.md "For the operator").

Each agent gets a config file of its own, ``<node>.json`` in the ConfigMap (the pod picks
its file by ``$(NODE_NAME)``): the name its peers know it by (``names.agent_member_names``),
the node's address to bind, and its end of every tunnel. A node the ConfigMap does not
name yet (just added) crash-loops its agent until the next pass writes its file.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from novacron_operator import names
from novacron_operator.builders.common import (
    REGION_LABEL,
    RUN_AS,
    Manifest,
    Owner,
    config_hash,
    labels,
    meta,
    restricted_container_security,
    selector_labels,
)
from novacron_operator.builders.federation import (
    AGENT_HTTP_PORT,
    AGENT_PORT,
    AgentHost,
    AgentSeat,
    TunnelLink,
)

# The ConfigMap is mounted over /etc/novacron whole, as the node's and the gateway's are:
# the image's own /etc/novacron is 0750 and owned by its build user (10001), so a mount
# *below* it is unreachable for the pods' uid 65532 ("cannot read: Permission denied"; an
# fsGroup cannot help, it adds group 65532, not 10001).
AGENT_DIR = "/etc/novacron"
KEYS_DIR = "/etc/novacron/wireguard"
TUNNEL_STATE = "/run/novacron/tunnels"  # hostPath: outlives the pod, so the next adopts
WIREGUARD_SOCKETS = "/var/run/wireguard"  # wireguard-go's UAPI sockets (hostPath, same)
PUBLIC_KEYS = "novacron.io/public-keys"  # on the key Secret: its agents' public keys (JSON)
KEYS_CREATED = "novacron.io/keys-created-at"  # when its key pairs were made (RFC 3339)
# taints a DaemonSet's pods tolerate on their own (the DaemonSet controller adds these)
DAEMON_TOLERATED = ("node.kubernetes.io/",)


@dataclass(frozen=True)
class AgentSetup:
    """Everything a region's agents get beyond the region's own spec."""

    seats: tuple[AgentSeat, ...]  # one per Kubernetes node the DaemonSet runs on
    tunnel_kind: str = "none"
    links: Mapping[str, Sequence[TunnelLink]] | None = None  # agent name -> its tunnels
    topology: str | None = None  # topology.json (a copy: the agents' namespace may differ)
    location: tuple[float, float] | None = None


def node_ip(node: Manifest) -> str | None:
    """The address other hosts reach a node at: its InternalIP (IPv4 first), else its
    ExternalIP."""
    addrs = (node.get("status") or {}).get("addresses") or []
    for kind in ("InternalIP", "ExternalIP"):
        found = [a["address"] for a in addrs if a.get("type") == kind and a.get("address")]
        v4 = [a for a in found if ":" not in a]
        if v4 or found:
            return str((v4 or found)[0])
    return None


def runs_agents(node: Manifest, selector: Mapping[str, str]) -> bool:
    """Whether the DaemonSet with this node selector puts a pod on ``node``: the labels
    match and no taint it does not tolerate repels it."""
    labels_ = (node.get("metadata") or {}).get("labels") or {}
    if any(labels_.get(k) != v for k, v in selector.items()):
        return False
    for taint in (node.get("spec") or {}).get("taints") or []:
        if taint.get("effect") in ("NoSchedule", "NoExecute") and not str(
            taint.get("key", "")
        ).startswith(DAEMON_TOLERATED):
            return False
    return True


def agent_hosts(nodes: Iterable[Manifest], selector: Mapping[str, str]) -> tuple[AgentHost, ...]:
    out = []
    for node in nodes:
        ip = node_ip(node)
        if ip is not None and runs_agents(node, selector):
            out.append(AgentHost(node["metadata"]["name"], ip))
    return tuple(sorted(out))


def node_config(
    seat: AgentSeat, region: str, zones: list[str], setup: AgentSetup
) -> dict[str, Any]:
    """``<node>.json``: what ``novacron agent --config`` loads (AgentConfig)."""
    out: dict[str, Any] = {
        "name": seat.name,
        "region": region,
        "zones": zones,
        # the node's own address, not 0.0.0.0: hostNetwork pods of several kubelets on one
        # host (a test cluster) would otherwise clash on the port
        "listen": f"{seat.host.ip}:{AGENT_PORT}",
        "http": f"{seat.host.ip}:{AGENT_HTTP_PORT}",
    }
    if setup.location is not None:
        out["latitude"], out["longitude"] = setup.location
    if setup.tunnel_kind != "none":
        links = (setup.links or {}).get(seat.name, ())
        tunnels: dict[str, Any] = {
            "kind": setup.tunnel_kind,
            "links": [link.as_config() for link in links],
            "keepOnExit": True,
            "stateDir": TUNNEL_STATE,
        }
        if setup.tunnel_kind == "wireguard":
            tunnels["keysDir"] = KEYS_DIR
        out["tunnels"] = tunnels
    return out


def config_data(region: str, zones: list[str], setup: AgentSetup) -> dict[str, str]:
    data = {
        f"{seat.host.node}.json": json.dumps(
            node_config(seat, region, zones, setup), indent=2, sort_keys=True
        )
        for seat in setup.seats
    }
    if setup.topology is not None:
        data["topology.json"] = setup.topology
    return data


def daemonset(
    owner: Owner,
    region: str,
    name: str,
    namespace: str,
    image: str,
    pull_policy: str,
    node_selector: dict[str, str],
    setup: AgentSetup,
    digest: str,
) -> Manifest:
    sel = selector_labels(owner, "agent")
    args = ["agent", "--config", f"{AGENT_DIR}/$(NODE_NAME).json"]
    if setup.topology is not None:
        args += ["--topology", f"{AGENT_DIR}/topology.json"]
    kind = setup.tunnel_kind
    c: Manifest = {
        "name": "agent",
        "image": image,
        "imagePullPolicy": pull_policy,
        "args": args,
        "ports": [
            # hostNetwork: the container ports are the host's
            {"name": "probe", "containerPort": AGENT_PORT, "protocol": "UDP"},
            {"name": "bandwidth", "containerPort": AGENT_PORT, "protocol": "TCP"},
            {"name": "http", "containerPort": AGENT_HTTP_PORT, "protocol": "TCP"},
        ],
        "env": [
            {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        ],
        "resources": {
            "requests": {"cpu": "20m", "memory": "96Mi"},
            "limits": {"memory": "256Mi"},
        },
        "readinessProbe": {
            "httpGet": {"path": "/healthz", "port": "http"},
            "periodSeconds": 10,
            "timeoutSeconds": 2,
        },
        "livenessProbe": {
            "httpGet": {"path": "/healthz", "port": "http"},
            "periodSeconds": 10,
            "timeoutSeconds": 2,
            "failureThreshold": 6,
        },
        "volumeMounts": [
            {"name": "config", "mountPath": AGENT_DIR, "readOnly": True},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
    }
    volumes: list[Manifest] = [
        {"name": "config", "configMap": {"name": name}},
        {"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}},
    ]
    if kind == "none":
        # measure and route only: nothing beyond the host's network
        c["securityContext"] = restricted_container_security()
    else:
        # interfaces are changed by root with NET_ADMIN alone (a non-root user gets no
        # effective capabilities from the runtime); the userspace GRE needs a raw socket,
        # both userspace backends /dev/net/tun
        userspace = kind in ("gre", "wireguard")
        caps = ["NET_ADMIN", *(["NET_RAW"] if userspace else [])]
        c["securityContext"] = {
            **restricted_container_security(),
            "runAsNonRoot": False,
            "runAsUser": 0,
            "capabilities": {"drop": ["ALL"], "add": caps},
        }
        c["volumeMounts"].append({"name": "tunnel-state", "mountPath": TUNNEL_STATE})
        volumes.append(
            {
                "name": "tunnel-state",
                "hostPath": {"path": TUNNEL_STATE, "type": "DirectoryOrCreate"},
            }
        )
        if userspace:
            c["volumeMounts"].append({"name": "tun", "mountPath": "/dev/net/tun"})
            volumes.append(
                {"name": "tun", "hostPath": {"path": "/dev/net/tun", "type": "CharDevice"}}
            )
        if kind == "wireguard":
            c["volumeMounts"] += [
                {"name": "wireguard-sockets", "mountPath": WIREGUARD_SOCKETS},
                {"name": "keys", "mountPath": KEYS_DIR, "readOnly": True},
            ]
            volumes += [
                {
                    "name": "wireguard-sockets",
                    "hostPath": {"path": WIREGUARD_SOCKETS, "type": "DirectoryOrCreate"},
                },
                # mounted whole (no subPath): a rotation reaches the running agents
                {"name": "keys", "secret": {"secretName": names.wireguard_secret(name)}},
            ]
    pod_security: Manifest = {"seccompProfile": {"type": "RuntimeDefault"}}
    if kind == "none":
        pod_security.update({"runAsNonRoot": True, "runAsUser": RUN_AS, "runAsGroup": RUN_AS})
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": meta(owner, name, "agent", namespace, labels={REGION_LABEL: region}),
        "spec": {
            "selector": {"matchLabels": sel},
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
            "template": {
                "metadata": {
                    "labels": labels(owner, "agent", {REGION_LABEL: region}),
                    "annotations": {"novacron.io/config-hash": digest},
                },
                "spec": {
                    "serviceAccountName": name,
                    "automountServiceAccountToken": False,
                    "hostNetwork": True,
                    "dnsPolicy": "ClusterFirstWithHostNet",
                    "nodeSelector": node_selector,
                    # probing stops and the sockets close at once on SIGTERM
                    "terminationGracePeriodSeconds": 10,
                    "securityContext": pod_security,
                    "containers": [c],
                    "volumes": volumes,
                },
            },
        },
    }


def build_agents(
    owner: Owner,
    region: str,
    zones: list[str],
    namespace: str,
    image: str,
    pull_policy: str,
    node_selector: dict[str, str],
    setup: AgentSetup,
) -> list[Manifest]:
    """ServiceAccount, ConfigMap and DaemonSet of a region's agents (the key Secret is made
    by ``wireguard_secret``: it depends on keys already issued)."""
    ns, name = names.agent(owner.name, owner.namespace, namespace)
    data = config_data(region, zones, setup)
    account = {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": meta(owner, name, "agent", ns),
        "automountServiceAccountToken": False,
    }
    config = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": meta(owner, name, "agent", ns),
        "data": data,
    }
    ds = daemonset(
        owner,
        region,
        name,
        ns,
        image,
        pull_policy,
        node_selector,
        setup,
        config_hash(data),
    )
    return [account, config, ds]


def wireguard_secret(
    owner: Owner,
    namespace: str,
    name: str,
    private: Mapping[str, str],
    public: Mapping[str, str],
    created: str,
) -> Manifest:
    """The region's WireGuard keys as ``tunnels.spec.secret_manifest`` shapes them:
    ``<agent>.key`` for this region's agents, ``<agent>.pub`` for every agent of the
    federation. Its own public keys are also an annotation, which the other regions' passes
    read (the operator's cache holds no Secret data)."""
    from novacron_core.tunnels.spec import public_key

    text = {f"{a}.key": k for a, k in sorted(private.items())}
    own = {a: public_key(k) for a, k in sorted(private.items())}
    text |= {f"{a}.pub": p for a, p in sorted({**public, **own}.items())}
    # data, not stringData: a server-side apply of stringData never reads back the same
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": meta(
            owner,
            names.wireguard_secret(name),
            "agent",
            namespace,
            annotations={PUBLIC_KEYS: json.dumps(own, sort_keys=True), KEYS_CREATED: created},
        ),
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in text.items()},
    }
