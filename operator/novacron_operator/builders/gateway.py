"""A region's gateway: ``novacron gateway`` as a Deployment behind a Service, scaled by an
HPA (docs/gateway.md "What the operator and the demo must do").

Its config is ``gateway.json`` in the region's ConfigMap, in the gateway's own shape: this
region and every other local region of its federation, each discovered through its nodes'
client Service and placed at its ``spec.location`` (the gateway's geo proximity). The
federation's ``topology.json`` (``--topology``) adds the remote members. The gateway reads
both once, at start: the pods' template carries a hash of both, so a change rolls them
(``maxUnavailable: 0``: a new pod is Ready before an old one goes).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from novacron_operator import names
from novacron_operator.builders.common import (
    API_PORT,
    GATEWAY_ADMIN_PORT,
    GATEWAY_PORT,
    REGION_LABEL,
    ZONE_LABEL,
    Manifest,
    Owner,
    labels,
    meta,
    probe,
    restricted_container_security,
    restricted_pod_security,
    selector_labels,
)
from novacron_operator.models import NovaCronRegionSpec

CONFIG_FILE = "/etc/novacron/gateway.json"
SHUTDOWN_TIMEOUT_S = 15  # the gateway drains answers in flight this long on SIGTERM
SERVICE_PORT = 80  # plain HTTP: no certificate is mounted (docs/gateway.md item 2)


@dataclass(frozen=True)
class GatewayRegion:
    """A region as the gateway's config lists it."""

    name: str  # the nodes' region name (their VMs' home_region)
    seeds: tuple[str, ...]  # client API addresses to discover its members from
    location: tuple[float, float] | None = None

    def as_config(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "seeds": list(self.seeds)}
        if self.location is not None:
            out["location"] = list(self.location)
        return out


def own_region(owner: Owner, spec: NovaCronRegionSpec) -> GatewayRegion:
    loc = spec.location
    return GatewayRegion(
        spec.region_name,
        (names.service_address(owner.name, owner.namespace, API_PORT),),
        (loc.latitude, loc.longitude) if loc else None,
    )


def gateway_config(own: GatewayRegion, others: tuple[GatewayRegion, ...]) -> dict[str, Any]:
    """``gateway.json``: what ``novacron gateway --config`` loads (GatewayConfig)."""
    return {
        "region": own.name,
        "regions": [r.as_config() for r in (own, *sorted(others, key=lambda r: r.name))],
        "listen": f"0.0.0.0:{GATEWAY_PORT}",
        "admin_listen": f"0.0.0.0:{GATEWAY_ADMIN_PORT}",
        "api_port": API_PORT,
        "shutdown_timeout_s": SHUTDOWN_TIMEOUT_S,
    }


def build_gateway(
    owner: Owner,
    spec: NovaCronRegionSpec,
    image: str,
    pull_policy: str,
    node_selector: dict[str, str],
    federation: str | None,
    digest: str,
    federation_dir: str,
) -> list[Manifest]:
    name = names.gateway(owner.name)
    sel = selector_labels(owner, "gateway")
    args = ["gateway", "--config", CONFIG_FILE]
    mounts: list[Manifest] = [
        {"name": "config", "mountPath": "/etc/novacron", "readOnly": True},
        {"name": "tmp", "mountPath": "/tmp"},
    ]
    volumes: list[Manifest] = [
        {"name": "config", "configMap": {"name": names.region_config(owner.name)}},
        {"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "32Mi"}},
    ]
    if federation:
        args += ["--topology", f"{federation_dir}/topology.json"]
        mounts.append({"name": "federation", "mountPath": federation_dir, "readOnly": True})
        volumes.append({"name": "federation", "configMap": {"name": names.topology(federation)}})
    c: Manifest = {
        "name": "gateway",
        "image": image,
        "imagePullPolicy": pull_policy,
        "args": args,
        "ports": [
            {"name": "http", "containerPort": GATEWAY_PORT},
            {"name": "metrics", "containerPort": GATEWAY_ADMIN_PORT},
        ],
        "securityContext": restricted_container_security(),
        "env": [
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        ],
        "resources": {
            "requests": {"cpu": "100m", "memory": "128Mi"},
            "limits": {"memory": "256Mi"},
        },
        # /readyz turns 503 as a drain starts: the Service stops sending at once
        "readinessProbe": probe("/readyz", "metrics", 5),
        "livenessProbe": {**probe("/healthz", "metrics"), "failureThreshold": 3},
        "volumeMounts": mounts,
    }
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta(owner, name, "gateway", labels={REGION_LABEL: spec.region_name}),
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
                    "nodeSelector": node_selector,
                    # the drain (shutdown_timeout_s) and a few seconds to exit
                    "terminationGracePeriodSeconds": SHUTDOWN_TIMEOUT_S + 5,
                    "containers": [c],
                    "volumes": volumes,
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
            "ports": [
                {"name": "http", "port": SERVICE_PORT, "targetPort": "http"},
                {"name": "metrics", "port": GATEWAY_ADMIN_PORT, "targetPort": "metrics"},
            ],
        },
    }
    account = {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": meta(owner, name, "gateway"),
        "automountServiceAccountToken": False,
    }
    return [account, deployment, service, hpa(owner, spec, name)]


def hpa(owner: Owner, spec: NovaCronRegionSpec, name: str) -> Manifest:
    return {
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


def policy(owner: Owner) -> Manifest:
    """Clients reach the gateway's port from anywhere: it is the region's public entry. Its
    admin port (probes, /metrics, /v1/backends) is left to the kubelet and to whatever
    the chart's monitoring policy admits."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": meta(owner, names.gateway(owner.name), "gateway"),
        "spec": {
            "podSelector": {"matchLabels": selector_labels(owner, "gateway")},
            "policyTypes": ["Ingress"],
            "ingress": [{"ports": [{"protocol": "TCP", "port": GATEWAY_PORT}]}],
        },
    }


def service_monitor(owner: Owner) -> Manifest:
    """The gateway's /metrics (novacron_gateway_requests_per_second: the HPA's Pods metric,
    through prometheus-adapter)."""
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": meta(owner, names.gateway(owner.name), "gateway"),
        "spec": {
            "selector": {"matchLabels": selector_labels(owner, "gateway")},
            "endpoints": [{"port": "metrics", "path": "/metrics", "interval": "15s"}],
        },
    }
