"""The REST vocabulary the operator speaks: every kind it reads or writes, their paths,
and the API server's error."""

from __future__ import annotations

import json

# kind -> (apiVersion, plural); every kind the operator reads or writes
KINDS: dict[str, tuple[str, str]] = {
    "ConfigMap": ("v1", "configmaps"),
    "Secret": ("v1", "secrets"),
    "Service": ("v1", "services"),
    "ServiceAccount": ("v1", "serviceaccounts"),
    "Pod": ("v1", "pods"),
    "PersistentVolumeClaim": ("v1", "persistentvolumeclaims"),
    "Event": ("v1", "events"),
    "Node": ("v1", "nodes"),
    "StatefulSet": ("apps/v1", "statefulsets"),
    "DaemonSet": ("apps/v1", "daemonsets"),
    "Deployment": ("apps/v1", "deployments"),
    "PodDisruptionBudget": ("policy/v1", "poddisruptionbudgets"),
    "HorizontalPodAutoscaler": ("autoscaling/v2", "horizontalpodautoscalers"),
    "NetworkPolicy": ("networking.k8s.io/v1", "networkpolicies"),
    "Lease": ("coordination.k8s.io/v1", "leases"),
    "ServiceMonitor": ("monitoring.coreos.com/v1", "servicemonitors"),
    "Certificate": ("cert-manager.io/v1", "certificates"),
    "NovaCronCluster": ("novacron.io/v1alpha1", "novacronclusters"),
    "NovaCronRegion": ("novacron.io/v1alpha1", "novacronregions"),
    "DWCPFederation": ("novacron.io/v1alpha1", "dwcpfederations"),
}
# children we own and therefore prune; optional kinds only when their API exists
OWNED = [
    "ConfigMap", "Secret", "Service", "ServiceAccount", "StatefulSet", "DaemonSet",
    "Deployment", "PodDisruptionBudget", "HorizontalPodAutoscaler", "NetworkPolicy",
]  # fmt: skip
OPTIONAL_OWNED = {"ServiceMonitor": "monitoring.coreos.com/v1", "Certificate": "cert-manager.io/v1"}


class ApiError(Exception):
    def __init__(self, status: int, body: str) -> None:
        self.status = status
        self.body = body
        try:
            self.message = str(json.loads(body).get("message", body))
        except ValueError:
            self.message = body
        super().__init__(f"{status}: {self.message}")


def path(kind: str, namespace: str | None, name: str | None = None, sub: str = "") -> str:
    api_version, plural = KINDS[kind]
    base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    out = f"{base}/namespaces/{namespace}/{plural}" if namespace else f"{base}/{plural}"
    if name:
        out += f"/{name}"
    return out + (f"/{sub}" if sub else "")
