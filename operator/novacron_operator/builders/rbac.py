"""The operator's own identity: a ServiceAccount and Roles with exactly the verbs it uses.

Namespaced Roles only (the operator watches its namespace(s)); API discovery, which kopf
and the ServiceMonitor check use, is open to every authenticated identity already.
"""

from __future__ import annotations

from novacron_operator.builders.common import Manifest

OPERATOR = "novacron-operator"
WRITE = ["get", "list", "watch", "create", "patch", "update", "delete"]


def _rules() -> list[Manifest]:
    return [
        {
            "apiGroups": ["novacron.io"],
            "resources": ["novacronclusters", "novacronregions", "dwcpfederations"],
            "verbs": ["get", "list", "watch", "patch"],  # patch: the agent finalizer
        },
        {
            "apiGroups": ["novacron.io"],
            "resources": [
                "novacronclusters/status",
                "novacronregions/status",
                "dwcpfederations/status",
            ],
            "verbs": ["get", "patch"],
        },
        {
            "apiGroups": [""],
            "resources": ["configmaps", "secrets", "services", "serviceaccounts"],
            "verbs": WRITE,
        },
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["list", "watch"]},
        {"apiGroups": [""], "resources": ["persistentvolumeclaims"], "verbs": ["list", "patch"]},
        {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "patch"]},
        {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]},
        {
            "apiGroups": ["apps"],
            "resources": ["statefulsets", "daemonsets", "deployments"],
            "verbs": WRITE,
        },
        {"apiGroups": ["policy"], "resources": ["poddisruptionbudgets"], "verbs": WRITE},
        {"apiGroups": ["autoscaling"], "resources": ["horizontalpodautoscalers"], "verbs": WRITE},
        {"apiGroups": ["networking.k8s.io"], "resources": ["networkpolicies"], "verbs": WRITE},
        {"apiGroups": ["monitoring.coreos.com"], "resources": ["servicemonitors"], "verbs": WRITE},
        {"apiGroups": ["cert-manager.io"], "resources": ["certificates"], "verbs": WRITE},
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "verbs": ["get", "create", "update"],
        },
    ]


def _agent_rules() -> list[Manifest]:
    return [
        {"apiGroups": [""], "resources": ["configmaps", "serviceaccounts"], "verbs": WRITE},
        {"apiGroups": ["apps"], "resources": ["daemonsets"], "verbs": WRITE},
    ]


def operator_rbac(namespace: str, agent_namespace: str | None = None) -> list[Manifest]:
    """ServiceAccount + Role + RoleBinding in the operator's namespace (and agent rights in
    the agent namespace when agents live apart)."""
    subject = [{"kind": "ServiceAccount", "name": OPERATOR, "namespace": namespace}]
    out: list[Manifest] = [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": OPERATOR, "namespace": namespace},
        }
    ]
    grants = [(namespace, _rules())]
    if agent_namespace and agent_namespace != namespace:
        grants.append((agent_namespace, _agent_rules()))
    for ns, rules in grants:
        out.append(
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "Role",
                "metadata": {"name": OPERATOR, "namespace": ns},
                "rules": rules,
            }
        )
        out.append(
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": {"name": OPERATOR, "namespace": ns},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "Role",
                    "name": OPERATOR,
                },
                "subjects": subject,
            }
        )
    return out
