"""NovaCronRegion -> everything one region runs: nodes (and, once their commands exist,
agents and gateway), and their plumbing."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal

from novacron_operator.builders.common import (
    API_PORT,
    GATEWAY_PORT,
    METRICS_PORT,
    OWNER_LABEL,
    PEER_PORT,
    REGION_LABEL,
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
from novacron_operator.capabilities import available
from novacron_operator.models import Effective, NovaCronClusterSpec, NovaCronRegionSpec, effective

TEMPLATE_HASH = "novacron.io/template-hash"
BOOTSTRAP_ANNOTATION = "novacron.io/bootstrap-replicas"
# on the region once its group has been seen with a leader: pods start "existing" from then on
FORMED_ANNOTATION = "novacron.io/group-formed"


@dataclass(frozen=True)
class RegionContext:
    """What a region needs from outside its own spec."""

    cluster: NovaCronClusterSpec
    cluster_name: str
    service_monitor_crd: bool = False
    # agents need hostNetwork + NET_ADMIN, which PodSecurity 'restricted' (and 'baseline')
    # forbid: they may live in a separate privileged namespace, like CNI agents do
    agent_namespace: str | None = None
    # the members the group was first created with (the nodes' bootstrap ``peers``); fixed
    # for the region's life, so scaling never rewrites the config and rolls every pod.
    # None: a new region, bootstrapped with spec.replicas
    bootstrap_replicas: int | None = None
    # what the day-2 sequencer decided for this pass (None: a new region's defaults)
    replicas: int | None = None  # StatefulSet replicas (spec.replicas when None)
    partition: int = 0  # pods with an ordinal >= partition run the newest template
    # "existing" once the group formed: a bootstrap pod that then starts on an empty volume
    # waits to be replaced instead of bootstrapping again (the ConfigMap's cluster-state,
    # outside the config hash: flipping it rolls no pod)
    cluster_state: Literal["new", "existing"] = "new"
    # the DWCPFederation this region is a member of: its nodes mount {federation}-topology
    federation: str | None = None
    # the volumeClaimTemplates size to keep while a resize cannot (yet) be applied: the live
    # StatefulSet's (the API server refuses any change to it); None: the spec's
    claim_size: str | None = None

    def eff(self, spec: NovaCronRegionSpec) -> Effective:
        return effective(spec, self.cluster.region_defaults)


def agent_names(owner: Owner, ctx: RegionContext) -> tuple[str, str]:
    """(namespace, name) of a region's agent objects; unique across source namespaces."""
    if ctx.agent_namespace and ctx.agent_namespace != owner.namespace:
        return ctx.agent_namespace, f"{owner.namespace}-{owner.name}-agent"
    return owner.namespace, f"{owner.name}-agent"


def image_of(spec: NovaCronRegionSpec, ctx: RegionContext) -> str:
    return spec.image or f"{ctx.cluster.image}:{ctx.cluster.version}"


DATA_DIR = "/var/lib/novacron"
CONFIG_DIR = "/etc/novacron"
CLUSTER_STATE_KEY = "cluster-state"
# the federation's topology ConfigMap, mounted whole (no subPath, so the kubelet updates
# the file in place and a federation change rolls no pod)
FEDERATION_DIR = f"{CONFIG_DIR}/federation"
FEDERATION_FILE = f"{FEDERATION_DIR}/topology.json"


def node_address(owner: Owner, ordinal: int, port: int) -> str:
    """A node pod's stable DNS name (the headless Service publishes not-ready pods)."""
    return f"{owner.name}-{ordinal}.{owner.name}-peers.{owner.namespace}.svc:{port}"


def bootstrap_peers(owner: Owner, replicas: int) -> str:
    """``id=peer/http`` for each bootstrap member, in the node's ``peers`` format."""
    return ",".join(
        f"{owner.name}-{i}={node_address(owner, i, PEER_PORT)}/{node_address(owner, i, API_PORT)}"
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
        "initial_cluster_state_file": f"{CONFIG_DIR}/{CLUSTER_STATE_KEY}",
    }
    if ctx.federation:
        out["federation_file"] = FEDERATION_FILE
    return out


def region_info(owner: Owner, spec: NovaCronRegionSpec, ctx: RegionContext) -> Manifest:
    """``region.json``: the region's topology for agents and gateways (not node settings)."""
    return {
        "cluster": ctx.cluster_name,
        "region": spec.region_name,
        "zones": spec.zones,
        "protocol": ctx.eff(spec).protocol,
        "nodes": f"{owner.name}.{owner.namespace}.svc:{API_PORT}",
        "ports": {"api": API_PORT, "peer": PEER_PORT, "metrics": METRICS_PORT},
        "tls": {"mode": ctx.cluster.tls.mode, "caSecret": f"{ctx.cluster_name}-ca"},
    }


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
            {"name": "metrics", "containerPort": METRICS_PORT},
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
        {"name": "config", "configMap": {"name": f"{owner.name}-config"}},
        {"name": "tls", "secret": {"secretName": f"{ctx.cluster_name}-ca", "optional": True}},
        {"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}},
    ]
    if ctx.federation:
        node["volumeMounts"].append(
            {"name": "federation", "mountPath": FEDERATION_DIR, "readOnly": True}
        )
        volumes.append({"name": "federation", "configMap": {"name": f"{ctx.federation}-topology"}})
    eff = ctx.eff(spec)
    pvc_spec: Manifest = {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": ctx.claim_size or eff.size}},
    }
    if eff.storage_class_name:
        pvc_spec["storageClassName"] = eff.storage_class_name
    pod_spec: Manifest = {
        "serviceAccountName": f"{owner.name}-node",
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
            },
        ),
        "spec": {
            "replicas": eff.replicas if ctx.replicas is None else ctx.replicas,
            "serviceName": f"{owner.name}-peers",
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
        {"name": "metrics", "port": METRICS_PORT, "targetPort": "metrics"},
    ]
    headless = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta(owner, f"{owner.name}-peers", "node"),
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


def agent(
    owner: Owner, spec: NovaCronRegionSpec, ctx: RegionContext, digest: str, config: Manifest
) -> list[Manifest]:
    ns, name = agent_names(owner, ctx)
    sel = selector_labels(owner, "agent")
    c = container(
        "agent", image_of(spec, ctx), ["agent", "--config", "/etc/novacron/region.json"], []
    )
    c["imagePullPolicy"] = ctx.cluster.image_pull_policy
    # measuring links and keeping tunnels needs the host's network and NET_ADMIN, nothing more
    c["securityContext"] = {
        **restricted_container_security(),
        "capabilities": {"drop": ["ALL"], "add": ["NET_ADMIN"]},
    }
    c["resources"] = {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "128Mi"}}
    c["volumeMounts"] = [{"name": "config", "mountPath": "/etc/novacron", "readOnly": True}]
    daemonset = {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": meta(owner, name, "agent", ns),
        "spec": {
            "selector": {"matchLabels": sel},
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
            "template": {
                "metadata": {
                    "labels": labels(owner, "agent", {REGION_LABEL: spec.region_name}),
                    "annotations": {"novacron.io/config-hash": digest},
                },
                "spec": {
                    "serviceAccountName": name,
                    "automountServiceAccountToken": False,
                    "hostNetwork": True,
                    "dnsPolicy": "ClusterFirstWithHostNet",
                    "nodeSelector": region_selector(spec),
                    "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
                    "containers": [c],
                    "volumes": [{"name": "config", "configMap": {"name": name}}],
                },
            },
        },
    }
    account = {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": meta(owner, name, "agent", ns),
        "automountServiceAccountToken": False,
    }
    config_copy = {**config, "metadata": meta(owner, name, "agent", ns)}
    return [account, config_copy, daemonset]


def gateway(
    owner: Owner, spec: NovaCronRegionSpec, ctx: RegionContext, digest: str
) -> list[Manifest]:
    name = f"{owner.name}-gateway"
    sel = selector_labels(owner, "gateway")
    c = container(
        "gateway",
        image_of(spec, ctx),
        ["gateway", "--config", "/etc/novacron/region.json"],
        [
            {"name": "https", "containerPort": GATEWAY_PORT},
            {"name": "metrics", "containerPort": METRICS_PORT},
        ],
    )
    c["imagePullPolicy"] = ctx.cluster.image_pull_policy
    c["resources"] = {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}}
    c["readinessProbe"] = probe("/readyz", "metrics", 5)
    c["livenessProbe"] = probe("/healthz", "metrics")
    c["volumeMounts"] = [
        {"name": "config", "mountPath": "/etc/novacron", "readOnly": True},
        {"name": "tmp", "mountPath": "/tmp"},
    ]
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta(owner, name, "gateway"),
        "spec": {
            # replicas is left to the HPA: applying it here would fight the autoscaler
            "selector": {"matchLabels": sel},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
            },
            "template": {
                "metadata": {
                    "labels": labels(owner, "gateway", {REGION_LABEL: spec.region_name}),
                    "annotations": {"novacron.io/config-hash": digest},
                },
                "spec": {
                    "serviceAccountName": name,
                    "automountServiceAccountToken": False,
                    "securityContext": restricted_pod_security(),
                    "nodeSelector": region_selector(spec),
                    "containers": [c],
                    "volumes": [
                        {"name": "config", "configMap": {"name": f"{owner.name}-config"}},
                        {"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "32Mi"}},
                    ],
                    "topologySpreadConstraints": [
                        {
                            "maxSkew": 1,
                            "topologyKey": ZONE_LABEL,
                            "whenUnsatisfiable": "ScheduleAnyway",
                            "labelSelector": {"matchLabels": sel},
                        }
                    ],
                },
            },
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta(owner, name, "gateway"),
        "spec": {
            "type": "ClusterIP",
            "selector": sel,
            "ports": [{"name": "https", "port": 443, "targetPort": "https"}],
        },
    }
    hpa = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": meta(owner, name, "gateway"),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": spec.gateway.min_replicas,
            "maxReplicas": spec.gateway.max_replicas,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {
                            "type": "Utilization",
                            "averageUtilization": spec.gateway.target_cpu_utilization,
                        },
                    },
                },
                *_request_rate_metric(spec),
            ],
        },
    }
    return [deployment, service, hpa]


def _request_rate_metric(spec: NovaCronRegionSpec) -> list[Manifest]:
    """The HPA scales on whichever metric asks for more replicas: CPU or request rate."""
    rps = spec.gateway.target_requests_per_second
    if rps is None:
        return []
    return [
        {
            "type": "Pods",
            "pods": {
                "metric": {"name": "novacron_gateway_requests_per_second"},
                "target": {"type": "AverageValue", "averageValue": str(rps)},
            },
        }
    ]


def service_accounts(owner: Owner, spec: NovaCronRegionSpec) -> list[Manifest]:
    comps = ["node", *(["gateway"] if available("gateway") else [])]
    return [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": meta(owner, f"{owner.name}-{c}", c),
            "automountServiceAccountToken": False,
        }
        for c in comps
    ]


def network_policies(owner: Owner) -> list[Manifest]:
    """Nodes take traffic only from this region's pods (and federation peers on the peer
    port); gateways are the public entry."""
    region_pods = {
        "matchLabels": {
            "app.kubernetes.io/name": "novacron",
            "app.kubernetes.io/instance": owner.name,
        }
    }
    any_novacron = {"matchLabels": {"app.kubernetes.io/name": "novacron"}}
    operator_pods = {
        "namespaceSelector": {},
        "podSelector": {
            "matchLabels": {
                "app.kubernetes.io/name": "novacron",
                "app.kubernetes.io/component": "operator",
            }
        },
    }
    node_policy = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": meta(owner, f"{owner.name}-node", "node"),
        "spec": {
            "podSelector": {"matchLabels": selector_labels(owner, "node")},
            "policyTypes": ["Ingress"],
            "ingress": [
                {"from": [{"podSelector": region_pods}], "ports": [{"port": API_PORT}]},
                # the operator calls the nodes' admin API (/v1/cluster), from any namespace
                {"from": [operator_pods], "ports": [{"port": API_PORT}]},
                {"from": [{"podSelector": any_novacron}], "ports": [{"port": PEER_PORT}]},
                {"ports": [{"port": METRICS_PORT}]},
            ],
        },
    }
    gateway_policy = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": meta(owner, f"{owner.name}-gateway", "gateway"),
        "spec": {
            "podSelector": {"matchLabels": selector_labels(owner, "gateway")},
            "policyTypes": ["Ingress"],
            "ingress": [{"ports": [{"port": GATEWAY_PORT}, {"port": METRICS_PORT}]}],
        },
    }
    return [node_policy, *([gateway_policy] if available("gateway") else [])]


def service_monitor(owner: Owner) -> Manifest:
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": meta(owner, owner.name, "node"),
        "spec": {
            "selector": {"matchLabels": {**selector_labels(owner, "node"), OWNER_LABEL: owner.uid}},
            # the node serves /metrics on its API port (no separate metrics listener)
            "endpoints": [{"port": "api", "path": "/metrics", "interval": "30s"}],
        },
    }


def agents_deployed(spec: NovaCronRegionSpec) -> bool:
    return available("agent") and spec.agent.enabled


def build_region(owner: Owner, spec: NovaCronRegionSpec, ctx: RegionContext) -> list[Manifest]:
    data = {"node.json": json.dumps(node_config(owner, spec, ctx), indent=2, sort_keys=True)}
    if available("agent") or available("gateway"):  # their config; the nodes never read it
        data["region.json"] = json.dumps(region_info(owner, spec, ctx), indent=2, sort_keys=True)
    digest = config_hash(data)
    data[CLUSTER_STATE_KEY] = ctx.cluster_state  # read at a node's start: not hashed
    cm = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": meta(owner, f"{owner.name}-config", "node"),
        "data": data,
    }
    out: list[Manifest] = [
        *service_accounts(owner, spec),
        cm,
        *services(owner),
        statefulset(owner, spec, ctx, digest),
        pdb(owner, ctx.eff(spec).replicas),
        *network_policies(owner),
    ]
    # agents and gateways run `novacron agent` / `novacron gateway`: deployed only once the
    # CLI has them (capabilities.py), never as pods that crash-loop on an unknown command
    if available("gateway"):
        out.extend(gateway(owner, spec, ctx, digest))
    if agents_deployed(spec):
        out.extend(agent(owner, spec, ctx, digest, cm))
    if ctx.service_monitor_crd and ctx.cluster.monitoring.service_monitor:
        out.append(service_monitor(owner))
    return out
