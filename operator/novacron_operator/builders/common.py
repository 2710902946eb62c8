"""Labels, owner references and security contexts shared by every builder."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from novacron_operator import API_VERSION

Manifest = dict[str, Any]

NAME = "novacron"
MANAGED_BY = "novacron-operator"
OWNER_LABEL = "novacron.io/owner"  # owner uid: the pruning and child-watch selector
# on a child in another namespace than its owner's (agents): where the owner lives
OWNER_NAMESPACE_LABEL = "novacron.io/owner-namespace"
REGION_LABEL = "topology.kubernetes.io/region"
ZONE_LABEL = "topology.kubernetes.io/zone"
# the nodes serve their client API, admin API and /metrics on API_PORT; the gateway its
# clients on GATEWAY_PORT and probes, /metrics and /v1/backends on GATEWAY_ADMIN_PORT
API_PORT, PEER_PORT, GATEWAY_PORT, GATEWAY_ADMIN_PORT = 8080, 7000, 8443, 9090
# the node's wire API (pipelined KV frames, what `novacron kv` and the Python client use):
# the API port plus the node's default --wire-port-offset (1)
WIRE_PORT = API_PORT + 1
RUN_AS = 65532


@dataclass(frozen=True)
class Owner:
    kind: str
    name: str
    namespace: str
    uid: str

    @classmethod
    def of(cls, body: Manifest) -> Owner:
        meta = body["metadata"]
        return cls(body["kind"], meta["name"], meta["namespace"], meta["uid"])

    def ref(self) -> Manifest:
        return {
            "apiVersion": API_VERSION,
            "kind": self.kind,
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }


def selector_labels(owner: Owner, component: str) -> dict[str, str]:
    """The immutable subset used in selectors (a StatefulSet's selector cannot change)."""
    return {
        "app.kubernetes.io/name": NAME,
        "app.kubernetes.io/instance": owner.name,
        "app.kubernetes.io/component": component,
    }


def labels(owner: Owner, component: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    return {
        **selector_labels(owner, component),
        "app.kubernetes.io/managed-by": MANAGED_BY,
        OWNER_LABEL: owner.uid,
        **(extra or {}),
    }


def meta(
    owner: Owner, name: str, component: str, namespace: str | None = None, **extra: Any
) -> Manifest:
    """Metadata of a child. In another namespace no owner reference is allowed, so such
    children are found (and swept once their owner is gone) by the owner labels alone."""
    out: Manifest = {
        "name": name,
        "namespace": namespace or owner.namespace,
        "labels": labels(owner, component, extra.pop("labels", None)),
    }
    if out["namespace"] == owner.namespace:
        out["ownerReferences"] = [owner.ref()]
    else:
        out["labels"][OWNER_NAMESPACE_LABEL] = owner.namespace
    out.update(extra)
    return out


def restricted_container_security() -> Manifest:
    """PodSecurity 'restricted' for one container."""
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "runAsUser": RUN_AS,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def restricted_pod_security() -> Manifest:
    return {
        "runAsNonRoot": True,
        "runAsUser": RUN_AS,
        "runAsGroup": RUN_AS,
        "fsGroup": RUN_AS,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def config_hash(data: Any) -> str:
    """Stable digest of config: put on the pod template so a config change rolls the pods."""
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def probe(path: str, port: str, period: int = 10) -> Manifest:
    return {"httpGet": {"path": path, "port": port}, "periodSeconds": period, "timeoutSeconds": 2}
