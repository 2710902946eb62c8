"""Every name the operator derives from a resource's name, in one place.

The builders create objects under these names, the reconcile passes look them up again, the
kubectl plugin and the tests find them: a name spelled in two places drifts apart.

A NovaCronRegion's ``metadata.name`` is an RFC 1035 label of at most 52 characters (the CRD
says so, ``schema.REGION_NAME_MAX``), so every name below stays a valid object name, Service
name and label value.
"""

from __future__ import annotations

# --- NovaCronRegion -----------------------------------------------------------------------


def node_statefulset(region: str) -> str:
    """The StatefulSet of the consensus nodes; also the ServiceMonitor and PDB."""
    return region


def node_pod(region: str, ordinal: int) -> str:
    """A node pod's name, which is also the node's id in its group (NOVACRON_NODE_ID)."""
    return f"{region}-{ordinal}"


def node_claim(region: str, ordinal: int) -> str:
    """The PersistentVolumeClaim of a node pod (the StatefulSet's template is ``data``)."""
    return f"data-{node_pod(region, ordinal)}"


def peers_service(region: str) -> str:
    """The headless Service: stable DNS names of the node pods, ready or not."""
    return f"{region}-peers"


def client_service(region: str) -> str:
    """The ClusterIP Service of the nodes' client API."""
    return region


def region_config(region: str) -> str:
    """The region's ConfigMap: node.json, gateway.json and the cluster state."""
    return f"{region}-config"


def node_account(region: str) -> str:
    return f"{region}-node"


def node_policy(region: str) -> str:
    return f"{region}-node"


def gateway(region: str) -> str:
    """The gateway's Deployment, Service, HPA, ServiceAccount, NetworkPolicy and monitor."""
    return f"{region}-gateway"


def agent(region: str, namespace: str, agent_namespace: str | None) -> tuple[str, str]:
    """(namespace, name) of a region's agent objects (DaemonSet, ConfigMap, ServiceAccount):
    in a separate agent namespace the name carries the region's namespace, so regions of
    two namespaces never collide there."""
    if agent_namespace and agent_namespace != namespace:
        return agent_namespace, f"{namespace}-{region}-agent"
    return namespace, f"{region}-agent"


def wireguard_secret(agent_name: str) -> str:
    """The Secret holding a region's WireGuard keys, beside its agents."""
    return f"{agent_name}-wireguard"


def node_address(region: str, namespace: str, ordinal: int, port: int) -> str:
    """A node pod's stable DNS name and port (the headless Service publishes not-ready
    pods, so peers resolve each other before they are ready)."""
    return f"{node_pod(region, ordinal)}.{peers_service(region)}.{namespace}.svc:{port}"


def service_address(region: str, namespace: str, port: int) -> str:
    return f"{client_service(region)}.{namespace}.svc:{port}"


# --- NovaCronCluster ----------------------------------------------------------------------


def ca_secret(cluster: str) -> str:
    return f"{cluster}-ca"


def ca_common_name(cluster: str) -> str:
    return f"novacron-{cluster}-ca"


# --- DWCPFederation -----------------------------------------------------------------------


def topology(federation: str) -> str:
    """The ConfigMap whose ``topology.json`` the member regions' pods read."""
    return f"{federation}-topology"


def agent_member_names(member: str, count: int) -> list[str]:
    """The names a federation member's agents go by, in the order topology.json lists their
    endpoints: the member's name for a single agent, ``<member>-<j>`` for several. It is
    how ``novacron agent`` names peers it reads from topology.json
    (``runtime/agent/config.peers_from_topology``), so each agent is given the name its
    peers call it by (pings and link-state adverts carry names)."""
    return [member] if count == 1 else [f"{member}-{j}" for j in range(count)]
