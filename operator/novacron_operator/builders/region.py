"""NovaCronRegion -> everything one region runs: its consensus nodes (StatefulSet, Services,
PDB, NetworkPolicy), its gateway (builders/gateway.py) and its DWCP agents
(builders/agent.py), and their plumbing."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Literal

from novacron_operator import names
from novacron_operator.builders.agent import AgentSetup, build_agents
from novacron_operator.builders.common import (
    API_PORT,
    OWNER_LABEL,
    PEER_PORT,
    REGION_LABEL,
    WIRE_PORT,
    ZONE_LABEL,
    Manifest,
    Owner,
    config_hash,
    labels,
    meta,
    probe,
    restricted_container_security,
    restricted_pod_security,
    selector_labels,
)
from novacron_operator.builders.federation import agents_view, gateway_view
from novacron_operator.builders.gateway import (
    CONFIG_FILE as GATEWAY_CONFIG,
)
from novacron_operator.builders.gateway import (
    GatewayRegion,
    build_gateway,
    gateway_config,
    own_region,
)
from novacron_operator.builders.gateway import policy as gateway_policy
from novacron_operator.builders.gateway import service_monitor as gateway_monitor
from novacron_operator.capabilities import available
from novacron_operator.models import Effective, NovaCronClusterSpec, NovaCronRegionSpec, effective

TEMPLATE_HASH = "novacron.io/template-hash"
BOOTSTRAP_ANNOTATION = "novacron.io/bootstrap-replicas"
# the protocol the group was created with (its log's format): on the region and its
# StatefulSet, like the bootstrap replicas; the nodes run it whatever spec.protocol says later
PROTOCOL_ANNOTATION = "novacron.io/bootstrap-protocol"
# on the region once its group has been seen with a leader: pods start "existing" from then on
FORMED_ANNOTATION = "novacron.io/group-formed"


@dataclass(frozen=True)
class RegionContext:
    """What a region needs from outside its own spec."""

    cluster: NovaCronClusterSpec
    cluster_name: str
    service_monitor_crd: bool = False
    # agents need hostNetwork (+ NET_ADMIN for tunnels), which PodSecurity 'restricted' (and
    # 'baseline') forbid: they live in a separate privileged namespace, like CNI agents do
    agent_namespace: str | None = None
    # the members the group was first created with (the nodes' bootstrap ``peers``); fixed
    # for the region's life, so scaling never rewrites the config and rolls every pod.
    # None: a new region, bootstrapped with spec.replicas
    bootstrap_replicas: int | None = None
    # the protocol the group was created with (``regions.bootstrap_protocol``); fixed for
    # the region's life: a node restarted with another protocol would misread its log.
    # None: a new region, created with the spec's protocol
    protocol: str | None = None
    # what the day-2 sequencer decided for this pass (None: a new region's defaults)
    replicas: int | None = None  # StatefulSet replicas (spec.replicas when None)
    partition: int = 0  # pods with an ordinal >= partition run the newest template
    # "existing" once the group formed: a bootstrap pod that then starts on an empty volume
    # waits to be replaced instead of bootstrapping again (the ConfigMap's cluster-state,
    # outside the config hash: flipping it rolls no pod)
    cluster_state: Literal["new", "existing"] = "new"
    # the DWCPFederation this region is a member of: its pods mount {federation}-topology
    federation: str | None = None
    # the volumeClaimTemplates size to keep while a resize cannot (yet) be applied: the live
    # StatefulSet's (the API server refuses any change to it); None: the spec's
    claim_size: str | None = None
    # the federation's topology.json (its text): gateways and agents read it once, at start,
    # so their templates carry its hash; the agents get a copy of it
    topology: str | None = None
    # the federation's other local regions, for the gateway's config
    gateway_peers: tuple[GatewayRegion, ...] = ()
    # what this region's agents are called, where they run, which tunnels they keep
    # (None: no Kubernetes node is known to run them, as in ``novacron render``)
    agents: AgentSetup | None = field(default=None, compare=False)
    # where every agent of the federation runs: they may TCP-probe this region's nodes
    probe_hosts: tuple[str, ...] = ()

    def eff(self, spec: NovaCronRegionSpec) -> Effective:
        return effective(spec, self.cluster.region_defaults)

    def protocol_of(self, spec: NovaCronRegionSpec) -> str:
        """The protocol the nodes run: the bootstrap one, else the spec's."""
        return self.protocol or self.eff(spec).protocol


def agent_names(owner: Owner, ctx: RegionContext) -> tuple[str, str]:
    """(namespace, name) of a region's agent objects; unique across source namespaces."""
    return names.agent(owner.name, owner.namespace, ctx.agent_namespace)


def image_of(spec: NovaCronRegionSpec, ctx: RegionContext) -> str:
    return spec.image or f"{ctx.cluster.image}:{ctx.cluster.version}"


DATA_DIR = "/var/lib/novacron"
CONFIG_DIR = "/etc/novacron"
CLUSTER_STATE_KEY = "cluster-state"
# the federation's topology ConfigMap, mounted whole (no subPath, so the kubelet updates
# the file in place and a federation change rolls no node pod: the nodes re-read it)
FEDERATION_DIR = f"{CONFIG_DIR}/federation"
FEDERATION_FILE = f"{FEDERATION_DIR}/topology.json"


def node_address(owner: Owner, ordinal: int, port: int) -> str:
    """A node pod's stable DNS name (the headless Service publishes not-ready pods)."""
    return names.node_address(owner.name, owner.namespace, ordinal, port)


def bootstrap_peers(owner: Owner, replicas: int) -> str:
    """``id=peer/http`` for each bootstrap member, in the node's ``peers`` format."""
    return ",".join(
        f"{names.node_pod(owner.name, i)}="
        f"{node_address(owner, i, PEER_PORT)}/{node_address(owner, i, API_PORT)}"
        for i in range(replicas)
    )


def node_config(owner: Owner, spec: NovaCronRegionSpec, ctx: RegionContext) -> Manifest:
    """``node.json``: exactly what ``novacron node --config`` loads (NodeSettings). The node
    id comes from the pod name (NOVACRON_NODE_ID); a pod whose id is not among the
    bootstrap peers starts as an empty joiner until the operator adds it."""
    bootstrap = ctx.bootstrap_replicas or ctx.eff(spec).replicas
    out: Manifest = {
        "region": spec.region_name,
        "peers": bootstrap_peers(owner, bootstrap),
        "peer_listen": f"0.0.0.0:{PEER_PORT}",
        "http_listen": f"0.0.0.0:{API_PORT}",
        "data_dir": DATA_DIR,
        "protocol": ctx.protocol_of(spec),
        "initial_cluster_state_file": f"{CONFIG_DIR}/{CLUSTER_STATE_KEY}",
    }
    if ctx.federation:
        out["federation_file"] = FEDERATION_FILE
    return out


def region_selector(spec: NovaCronRegionSpec) -> dict[str, str]:
    return {REGION_LABEL: spec.region_name, **spec.scheduling.node_selector}


def container(name: str, image: str, args: list[str], ports: list[Manifest]) -> Manifest:
    return {
        "name": name,
        "image": image,
        "args": args,
        "ports": ports,
        "securityContext": restricted_container_security(),
        "env": [
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {
                "name": "POD_NAMESPACE",
                "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}},
            },
        ],
    }


def statefulset(
    owner: Owner, spec: NovaCronRegionSpec, ctx: RegionContext, digest: str
) -> Manifest:
    sel = selector_labels(owner, "node")
    node = container(
        "node",
        image_of(spec, ctx),
        ["node", "--config", "/etc/novacron/node.json"],
        [
            {"name": "api", "containerPort": API_PORT},
            {"name": "peer", "containerPort": PEER_PORT},
            {"name": "wire", "containerPort": WIRE_PORT},
        ],
    )
    node["imagePullPolicy"] = ctx.cluster.image_pull_policy
    node["env"] = [
        {"name": "NOVACRON_NODE_ID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        *node["env"],
    ]
    node["resources"] = {
        "requests": {"cpu": spec.resources.cpu, "memory": spec.resources.memory},
        "limits": {"memory": spec.resources.memory},
    }
    node["readinessProbe"] = probe("/readyz", "api", 5)
    node["livenessProbe"] = {**probe("/healthz", "api"), "failureThreshold": 6}
    node["startupProbe"] = {**probe("/healthz", "api", 2), "failureThreshold": 60}
    node["volumeMounts"] = [
        {"name": "data", "mountPath": DATA_DIR},
        {"name": "config", "mountPath": "/etc/novacron", "readOnly": True},
        {"name": "tls", "mountPath": "/etc/novacron/tls", "readOnly": True},
        {"name": "tmp", "mountPath": "/tmp"},
    ]
    volumes: list[Manifest] = [
        {"name": "config", "configMap": {"name": names.region_config(owner.name)}},
        {
            "name": "tls",
            "secret": {"secretName": names.ca_secret(ctx.cluster_name), "optional": True},
        },
        {"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}},
    ]
    if ctx.federation:
        node["volumeMounts"].append(
            {"name": "federation", "mountPath": FEDERATION_DIR, "readOnly": True}
        )
        volumes.append(
            {"name": "federation", "configMap": {"name": names.topology(ctx.federation)}}
        )
    eff = ctx.eff(spec)
    pvc_spec: Manifest = {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": ctx.claim_size or eff.size}},
    }
    if eff.storage_class_name:
        pvc_spec["storageClassName"] = eff.storage_class_name
    pod_spec: Manifest = {
        "serviceAccountName": names.node_account(owner.name),
        "automountServiceAccountToken": False,
        "securityContext": restricted_pod_security(),
        "nodeSelector": region_selector(spec),
        "terminationGracePeriodSeconds": 30,
        "containers": [node],
        "volumes": volumes,
        "topologySpreadConstraints": [
            {
                "maxSkew": 1,
                "topologyKey": ZONE_LABEL,
                "whenUnsatisfiable": "DoNotSchedule",
                "labelSelector": {"matchLabels": sel},
            }
        ],
        "affinity": {
            "podAntiAffinity": {
                "preferredDuringSchedulingIgnoredDuringExecution": [
                    {
                        "weight": 100,
                        "podAffinityTerm": {
                            "topologyKey": "kubernetes.io/hostname",
                            "labelSelector": {"matchLabels": sel},
                        },
                    }
                ]
            },
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {
                            "matchExpressions": [
                                {"key": ZONE_LABEL, "operator": "In", "values": spec.zones}
                            ]
                        }
                    ]
                }
            },
        },
    }
    if spec.scheduling.priority_class_name:
        pod_spec["priorityClassName"] = spec.scheduling.priority_class_name
    template = {
        "metadata": {
            "labels": labels(owner, "node", {REGION_LABEL: spec.region_name}),
            "annotations": {"novacron.io/config-hash": digest},
        },
        "spec": pod_spec,
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": meta(
            owner,
            owner.name,
            "node",
            labels={REGION_LABEL: spec.region_name},
            annotations={
                # the sequencer holds the partition when this differs from the live object's
                TEMPLATE_HASH: config_hash(template),
                BOOTSTRAP_ANNOTATION: str(ctx.bootstrap_replicas or eff.replicas),
                PROTOCOL_ANNOTATION: ctx.protocol_of(spec),
            },
        ),
        "spec": {
            "replicas": eff.replicas if ctx.replicas is None else ctx.replicas,
            "serviceName": names.peers_service(owner.name),
            "podManagementPolicy": "Parallel",
            # the day-2 sequencer lowers the partition one ordinal at a time (highest first),
            # moving leadership off a pod before its ordinal is released
            "updateStrategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"partition": ctx.partition},
            },
            "selector": {"matchLabels": sel},
            # the claims hold the Raft logs: an accidental delete or a GitOps prune of the
            # region keeps them unless storage.whenDeleted says Delete
            "persistentVolumeClaimRetentionPolicy": {
                "whenDeleted": eff.when_deleted,
                "whenScaled": "Retain",
            },
            "template": template,
            "volumeClaimTemplates": [
                {
                    "apiVersion": "v1",
                    "kind": "PersistentVolumeClaim",
                    "metadata": {"name": "data", "labels": sel},
                    "spec": pvc_spec,
                }
            ],
        },
    }


def services(owner: Owner) -> list[Manifest]:
    sel = selector_labels(owner, "node")
    ports = [
        {"name": "api", "port": API_PORT, "targetPort": "api"},
        {"name": "peer", "port": PEER_PORT, "targetPort": "peer"},
        {"name": "wire", "port": WIRE_PORT, "targetPort": "wire"},
    ]
    headless = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta(owner, names.peers_service(owner.name), "node"),
        # peers must resolve each other before they are ready, or no quorum ever forms
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,
            "selector": sel,
            "ports": ports,
        },
    }
    client = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta(owner, owner.name, "node"),
        "spec": {"type": "ClusterIP", "selector": sel, "ports": ports},
    }
    return [headless, client]


def pdb(owner: Owner, replicas: int) -> Manifest:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": meta(owner, owner.name, "node"),
        "spec": {
            "minAvailable": replicas // 2 + 1,  # a majority: voluntary evictions keep quorum
            "selector": {"matchLabels": selector_labels(owner, "node")},
        },
    }


def node_account(owner: Owner) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": meta(owner, names.node_account(owner.name), "node"),
        "automountServiceAccountToken": False,
    }


def network_policies(
    owner: Owner, gateways: bool, agent_hosts: tuple[str, ...] = ()
) -> list[Manifest]:
    """The nodes' client and admin API (8080) takes traffic from this region's pods, the
    operator (any namespace) and every region's gateways (a gateway fails over to any
    region of the namespace); the peer port (7000) from NovaCron pods and from the hosts
    the federation's agents run on (hostNetwork: an agent measures a region without
    agents by TCP connects to its nodes' peer port). The gateways take their clients."""
    region_pods = {
        "matchLabels": {
            "app.kubernetes.io/name": "novacron",
            "app.kubernetes.io/instance": owner.name,
        }
    }
    any_novacron = {"matchLabels": {"app.kubernetes.io/name": "novacron"}}
    any_gateway = {
        "matchLabels": {
            "app.kubernetes.io/name": "novacron",
            "app.kubernetes.io/component": "gateway",
        }
    }
    operator_pods = {
        "namespaceSelector": {},
        "podSelector": {
            "matchLabels": {
                "app.kubernetes.io/name": "novacron",
                "app.kubernetes.io/component": "operator",
            }
        },
    }
    api = [{"protocol": "TCP", "port": API_PORT}]
    # the HTTP and wire APIs
    clients = [{"protocol": "TCP", "port": p} for p in (API_PORT, WIRE_PORT)]
    peer = [{"protocol": "TCP", "port": PEER_PORT}]
    ingress: list[Manifest] = [
        {"from": [{"podSelector": region_pods}, {"podSelector": any_gateway}], "ports": clients},
        # the operator calls the nodes' admin API (/v1/cluster), from any namespace
        {"from": [operator_pods], "ports": api},
        {"from": [{"podSelector": any_novacron}], "ports": peer},
    ]
    if agent_hosts:
        ingress.append(
            {"from": [{"ipBlock": {"cidr": f"{ip}/32"}} for ip in agent_hosts], "ports": peer}
        )
    node_policy = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": meta(owner, names.node_policy(owner.name), "node"),
        "spec": {
            "podSelector": {"matchLabels": selector_labels(owner, "node")},
            "policyTypes": ["Ingress"],
            "ingress": ingress,
        },
    }
    return [node_policy, *([gateway_policy(owner)] if gateways else [])]


def service_monitor(owner: Owner) -> Manifest:
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": meta(owner, names.node_statefulset(owner.name), "node"),
        "spec": {
            "selector": {"matchLabels": {**selector_labels(owner, "node"), OWNER_LABEL: owner.uid}},
            # the node serves /metrics on its API port (no separate metrics listener)
            "endpoints": [{"port": "api", "path": "/metrics", "interval": "30s"}],
        },
    }


def agents_deployed(spec: NovaCronRegionSpec) -> bool:
    return available("agent") and spec.agent.enabled


def gateway_deployed() -> bool:
    return available("gateway")


def build_region(owner: Owner, spec: NovaCronRegionSpec, ctx: RegionContext) -> list[Manifest]:
    node_json = json.dumps(node_config(owner, spec, ctx), indent=2, sort_keys=True)
    data = {"node.json": node_json}
    gw = gateway_deployed()
    if gw:  # the gateways' config; the nodes never read it
        cfg = gateway_config(own_region(owner, spec), ctx.gateway_peers)
        data[GATEWAY_CONFIG.rsplit("/", 1)[1]] = json.dumps(cfg, indent=2, sort_keys=True)
    data[CLUSTER_STATE_KEY] = ctx.cluster_state  # read at a node's start: hashed by nobody
    cm = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": meta(owner, names.region_config(owner.name), "node"),
        "data": data,
    }
    setup = ctx.agents or AgentSetup(())
    agents = agents_deployed(spec)
    out: list[Manifest] = [
        node_account(owner),
        cm,
        *services(owner),
        # each component's pods roll when what they read at start changes, and only then
        statefulset(owner, spec, ctx, config_hash({"node.json": node_json})),
        pdb(owner, ctx.eff(spec).replicas),
        *network_policies(owner, gw, ctx.probe_hosts),
    ]
    image, pull = image_of(spec, ctx), ctx.cluster.image_pull_policy
    # agents and gateways run `novacron agent` / `novacron gateway`: deployed only once the
    # CLI has them (capabilities.py), never as pods that crash-loop on an unknown command
    if gw:
        remote = gateway_view(ctx.topology) if ctx.topology else None
        digest = config_hash([data["gateway.json"], remote])
        fed = ctx.federation
        out += build_gateway(
            owner, spec, image, pull, region_selector(spec), fed, digest, FEDERATION_DIR
        )
        if ctx.service_monitor_crd and ctx.cluster.monitoring.service_monitor:
            out.append(gateway_monitor(owner))
    if agents:
        loc = spec.location
        setup = AgentSetup(
            setup.seats,
            setup.tunnel_kind,
            setup.links,
            agents_view(ctx.topology) if ctx.topology else None,
            (loc.latitude, loc.longitude) if loc else None,
        )
        out += build_agents(
            owner,
            spec.region_name,
            spec.zones,
            ctx.agent_namespace or owner.namespace,
            image,
            pull,
            region_selector(spec),
            setup,
        )
    if ctx.service_monitor_crd and ctx.cluster.monitoring.service_monitor:
        out.append(service_monitor(owner))
    return out
