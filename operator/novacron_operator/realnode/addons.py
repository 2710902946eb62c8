"""Cluster add-ons a real node needs, as manifests: cluster DNS (CoreDNS, as a pod behind
the usual ``kube-dns`` Service, so NetworkPolicies that allow DNS to ``k8s-app: kube-dns``
pods work as they would anywhere) and dynamic volumes (the local-path provisioner, as in
kind), plus the config files those processes read."""

from __future__ import annotations

import json
from typing import Any

from novacron_operator.realnode.host import DNS_SERVICE_IP

Manifest = dict[str, Any]
PAUSE_IMAGE = "novacron.local/pause:1"
COREDNS_IMAGE = "novacron.local/coredns:1"
HELPER_IMAGE = "novacron.local/busybox:1"
STORAGE_CLASS = "standard"  # kind's name for its default class, so manifests carry over
PROVISIONER = "rancher.io/local-path"
# port 53 in the pod too: NetworkPolicies allowing DNS name port 53, which they match
# after the Service's DNAT (the pod's sysctl lets its non-root user bind it)
DNS = 53

COREFILE = """\
.:53 {
    errors
    health :8080
    ready :8181
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 5
    }
    cache 5
    loadbalance
    reload
}
"""


def coredns() -> list[Manifest]:
    ns = "kube-system"
    labels = {"k8s-app": "kube-dns"}
    meta = {"name": "coredns", "namespace": ns, "labels": labels}
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": "system:coredns"},
            "rules": [
                {
                    "apiGroups": [""],
                    "resources": ["services", "pods", "namespaces"],
                    "verbs": ["list", "watch"],
                },
                {
                    "apiGroups": ["discovery.k8s.io"],
                    "resources": ["endpointslices"],
                    "verbs": ["list", "watch"],
                },
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "system:coredns"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "system:coredns",
            },
            "subjects": [{"kind": "ServiceAccount", "name": "coredns", "namespace": ns}],
        },
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": {"Corefile": COREFILE}},
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": meta,
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "serviceAccountName": "coredns",
                        "priorityClassName": "system-cluster-critical",
                        "dnsPolicy": "Default",
                        "securityContext": {
                            "runAsNonRoot": True,
                            "runAsUser": 65532,
                            "seccompProfile": {"type": "RuntimeDefault"},
                            "sysctls": [
                                {"name": "net.ipv4.ip_unprivileged_port_start", "value": "53"}
                            ],
                        },
                        "containers": [
                            {
                                "name": "coredns",
                                "image": COREDNS_IMAGE,
                                "imagePullPolicy": "Never",
                                "args": ["-conf", "/etc/coredns/Corefile"],
                                "ports": [
                                    {
                                        "name": "dns",
                                        "containerPort": DNS,
                                        "protocol": "UDP",
                                    },
                                    {"name": "dns-tcp", "containerPort": DNS},
                                ],
                                "readinessProbe": {
                                    "httpGet": {"path": "/ready", "port": 8181},
                                    "periodSeconds": 1,
                                },
                                "livenessProbe": {
                                    "httpGet": {"path": "/health", "port": 8080},
                                    "periodSeconds": 10,
                                },
                                "resources": {
                                    "requests": {"cpu": "10m", "memory": "32Mi"},
                                    "limits": {"memory": "128Mi"},
                                },
                                "securityContext": {
                                    "allowPrivilegeEscalation": False,
                                    "readOnlyRootFilesystem": True,
                                    "capabilities": {"drop": ["ALL"]},
                                },
                                "volumeMounts": [{"name": "config", "mountPath": "/etc/coredns"}],
                            }
                        ],
                        "volumes": [{"name": "config", "configMap": {"name": "coredns"}}],
                    },
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "kube-dns", "namespace": ns, "labels": labels},
            "spec": {
                "clusterIP": DNS_SERVICE_IP,
                "selector": labels,
                "ports": [
                    {"name": "dns", "port": 53, "targetPort": DNS, "protocol": "UDP"},
                    {"name": "dns-tcp", "port": 53, "targetPort": DNS},
                ],
            },
        },
    ]


def local_path_config(volume_dir: str) -> dict[str, str]:
    """The provisioner's ConfigMap data (its helper pods mount setup/teardown from it)."""
    helper = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "helper-pod"},
        "spec": {
            "priorityClassName": "system-node-critical",
            "containers": [
                {
                    "name": "helper-pod",
                    "image": HELPER_IMAGE,
                    "imagePullPolicy": "Never",
                    # it makes and removes directories owned by root on the host
                    "securityContext": {"runAsUser": 0, "runAsNonRoot": False},
                }
            ],
        },
    }
    return {
        "config.json": json.dumps(
            {"nodePathMap": [{"node": "DEFAULT_PATH_FOR_NON_LISTED_NODES", "paths": [volume_dir]}]}
        ),
        # world-writable like upstream's default: pods run as any uid and hostPath volumes
        # get no fsGroup
        "setup": '#!/bin/sh\nset -eu\nmkdir -m 0777 -p "$VOL_DIR"\n',
        "teardown": '#!/bin/sh\nset -eu\nrm -rf "$VOL_DIR"\n',
        "helperPod.yaml": json.dumps(helper),
    }


def local_path(volume_dir: str) -> list[Manifest]:
    ns = "kube-system"
    return [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": "local-path-provisioner", "namespace": ns},
        },
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "local-path-config", "namespace": ns},
            "data": local_path_config(volume_dir),
        },
        {
            "apiVersion": "storage.k8s.io/v1",
            "kind": "StorageClass",
            "metadata": {
                "name": STORAGE_CLASS,
                "annotations": {"storageclass.kubernetes.io/is-default-class": "true"},
            },
            "provisioner": PROVISIONER,
            "volumeBindingMode": "WaitForFirstConsumer",
            "reclaimPolicy": "Delete",
            # the provisioner's hostPath volumes cannot grow; resize is refused, not faked
            "allowVolumeExpansion": False,
        },
    ]
