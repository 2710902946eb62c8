"""Pydantic models of the three CRDs: the one source of their OpenAPI schemas (see crdgen).

Python attributes are snake_case; the wire (and schema) names are camelCase aliases.
Cross-field and transition rules are CEL, attached as ``x-kubernetes-validations`` so the
API server itself rejects bad objects, before the operator ever sees them.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel

from novacron_operator.conflict_models import ConflictPolicies
from novacron_operator.schema import (
    DNS_LABEL,
    QUANTITY,
    SEMVER,
    CommonStatus,
    ObjectRef,
    Spec,
    cel,
    rules,
    sub,
)

Protocol = Literal["raft", "multi-paxos", "epaxos", "eventual", "adaptive"]
# adaptive needs the agreed live switch (a group moving from one protocol to another at one
# committed point): not built, so it is refused where it is written, saying why
NO_ADAPTIVE = (
    "self != 'adaptive'",
    "adaptive is not available yet: it needs the agreed live switch between protocols, "
    "which is not built; choose raft, multi-paxos, epaxos or eventual",
)


# --- NovaCronCluster ---------------------------------------------------------------------


WhenDeleted = Literal["Retain", "Delete"]
DEFAULT_SIZE = "10Gi"

SIZE_DOC = (
    "PVC size per node. Raising it expands the existing PVCs when their StorageClass allows "
    "volume expansion (then the StatefulSet is re-created, its pods left running); otherwise, "
    "and for a smaller size, the condition VolumesResized=False says why."
)
WHEN_DELETED_DOC = (
    "What happens to the nodes' PVCs (their Raft logs) when the region is deleted: Retain "
    "(the default) keeps them, Delete removes them with the region."
)


class StorageDefaults(Spec):
    size: str = Field(default=DEFAULT_SIZE, pattern=QUANTITY, description=SIZE_DOC)
    storage_class_name: str | None = Field(default=None, description="StorageClass for PVCs.")
    when_deleted: WhenDeleted = Field(default="Retain", description=WHEN_DELETED_DOC)


class Storage(Spec):
    """A region's storage: each field unset takes the cluster's regionDefaults.storage."""

    size: str | None = Field(default=None, pattern=QUANTITY, description=SIZE_DOC)
    storage_class_name: str | None = Field(default=None, description="StorageClass for PVCs.")
    when_deleted: WhenDeleted | None = Field(default=None, description=WHEN_DELETED_DOC)


class RegionDefaults(Spec):
    replicas: int = Field(
        default=3,
        ge=1,
        le=7,
        description="Consensus replicas of a region that does not set spec.replicas.",
        json_schema_extra=rules(cel("self % 2 == 1", "regionDefaults.replicas must be odd")),
    )
    protocol: Protocol = Field(
        default="raft",
        description="Protocol of a region that does not set spec.protocol, chosen when the "
        "region is created (an existing region keeps the protocol it was created with).",
        json_schema_extra=rules(cel(*NO_ADAPTIVE)),
    )
    storage: StorageDefaults = sub(
        StorageDefaults, "Storage of a region, field by field where the region sets none."
    )


class TLS(Spec):
    mode: Literal["generated", "cert-manager", "disabled"] = Field(
        default="generated", description="Where mTLS certificates come from."
    )
    issuer_ref: ObjectRef | None = Field(default=None, description="cert-manager Issuer.")
    ca_validity_days: int = Field(default=3650, ge=1, le=36500, description="CA lifetime.")


class Monitoring(Spec):
    service_monitor: bool = Field(
        default=True,
        description="Create a ServiceMonitor per region (scraping the nodes' /metrics on "
        "their API port) when the monitoring.coreos.com API exists.",
    )


class NovaCronClusterSpec(Spec):
    # pydantic merges this with Spec's config (camelCase aliases, extra="forbid")
    model_config = ConfigDict(
        json_schema_extra=rules(
            cel(
                "self.tls.mode != 'cert-manager' || has(self.tls.issuerRef)",
                "tls.issuerRef is required when tls.mode is cert-manager",
                ".tls.issuerRef",
            )
        ),
    )
    version: str = Field(pattern=SEMVER, description="NovaCron version (image tag).")
    image: str = Field(
        default="ghcr.io/novacron/novacron",
        min_length=1,
        description="Image repository, tagged with version.",
    )
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = Field(
        default="IfNotPresent", description="Pull policy for every NovaCron container."
    )
    region_defaults: RegionDefaults = sub(RegionDefaults, "Defaults applied to regions.")
    tls: TLS = sub(TLS, "Mutual TLS between nodes, agents and gateways.")
    monitoring: Monitoring = sub(Monitoring, "Metrics and ServiceMonitors.")


class NovaCronClusterStatus(CommonStatus):
    ca_secret_name: str | None = Field(default=None, description="Secret holding the CA.")
    regions: int | None = Field(default=None, description="Regions referencing this cluster.")
    ready_regions: int | None = Field(default=None, description="Of which Ready.")


# --- NovaCronRegion ----------------------------------------------------------------------


class Location(Spec):
    latitude: float = Field(ge=-90, le=90, description="Degrees north.")
    longitude: float = Field(ge=-180, le=180, description="Degrees east.")


class Resources(Spec):
    cpu: str = Field(default="500m", pattern=QUANTITY, description="CPU request per node.")
    memory: str = Field(default="512Mi", pattern=QUANTITY, description="Memory request/limit.")


class Scheduling(Spec):
    node_selector: dict[str, str] = Field(
        default_factory=dict, description="Extra node labels (region label is implied)."
    )
    priority_class_name: str | None = Field(default=None, description="PriorityClass.")


class Agent(Spec):
    enabled: bool = Field(
        default=True,
        description="Run the DWCP agent DaemonSet (novacron agent, hostNetwork) on the "
        "region's Kubernetes nodes: it measures the links to the other member regions' "
        "agents and keeps the tunnels the federation's spec.tunnels asks for.",
    )


class Gateway(Spec):
    # pydantic merges this with Spec's config (camelCase aliases, extra="forbid")
    model_config = ConfigDict(
        json_schema_extra=rules(
            cel(
                "self.minReplicas <= self.maxReplicas",
                "gateway.minReplicas must not exceed maxReplicas",
                ".minReplicas",
            )
        ),
    )
    min_replicas: int = Field(default=2, ge=1, le=100, description="HPA minimum.")
    max_replicas: int = Field(default=5, ge=1, le=100, description="HPA maximum.")
    target_cpu_utilization: int = Field(default=70, ge=10, le=100, description="HPA target %.")
    target_requests_per_second: int | None = Field(
        default=None,
        ge=1,
        le=1_000_000,
        description="HPA target of average requests/s per gateway pod, as the Pods metric "
        "novacron_gateway_requests_per_second (served by a custom-metrics adapter such as "
        "prometheus-adapter). Unset: scale on CPU only.",
    )


# Fields of components whose ``novacron`` subcommand has not landed: the CRDs leave them out
# (an object that sets one is refused as an unknown field) until the command exists; see
# capabilities.py. The models keep them so the builders stay whole.
AGENT_FIELD: dict[str, Any] = {"x-novacron-capability": "agent"}
GATEWAY_FIELD: dict[str, Any] = {"x-novacron-capability": "gateway"}


class NovaCronRegionSpec(Spec):
    cluster_ref: ObjectRef = Field(description="The NovaCronCluster this region belongs to.")
    region_name: str = Field(
        pattern=DNS_LABEL,
        max_length=40,
        description="Region name: the nodes' region (home region of the VMs created there); "
        "pods run on nodes labelled topology.kubernetes.io/region with it. Unique among the "
        "regions of a namespace.",
        json_schema_extra=rules(cel("self == oldSelf", "regionName is immutable")),
    )
    location: Location | None = Field(
        default=None,
        description="Geographic location: the gateways' geo proximity (their config lists "
        "each local region of the federation with it) and the agents' coordinates.",
        json_schema_extra=GATEWAY_FIELD,
    )
    zones: list[str] = Field(
        min_length=1,
        max_length=6,
        description="Zones to spread nodes across.",
        json_schema_extra={
            "x-kubernetes-list-type": "set",
            "items": {"type": "string", "pattern": DNS_LABEL, "maxLength": 63},
        },
    )
    replicas: int | None = Field(
        default=None,
        ge=1,
        le=7,
        description="Consensus group size (odd, 1..7); unset: the cluster's "
        "regionDefaults.replicas.",
        json_schema_extra=rules(cel("self % 2 == 1", "replicas must be odd")),
    )
    protocol: Protocol | None = Field(
        default=None,
        description="Consensus protocol of the region's nodes: raft, multi-paxos, epaxos or "
        "eventual; unset: the cluster's regionDefaults.protocol. Fixed when the region is "
        "created (status.protocol records it): a running group cannot switch protocol yet.",
        json_schema_extra=rules(
            cel(*NO_ADAPTIVE),
            # a node restarted with another protocol on its log would misread it: the group
            # keeps its protocol until the agreed live switch exists. A legacy 'adaptive'
            # (which always ran raft) may be corrected.
            cel(
                "self == oldSelf || oldSelf == 'adaptive'",
                "protocol is fixed once the region exists: switching a running group needs "
                "the agreed live switch, which is not built (nodes restarted with another "
                "protocol would misread their log); create a new region for another protocol",
            ),
        ),
    )
    image: str | None = Field(default=None, description="Full image override for this region.")
    storage: Storage = sub(Storage, "Node storage; unset fields: regionDefaults.storage.")
    resources: Resources = sub(Resources, "Node resources.")
    scheduling: Scheduling = sub(Scheduling, "Extra scheduling constraints.")
    agent: Agent = sub(Agent, "DWCP networking agent.", **AGENT_FIELD)
    gateway: Gateway = sub(Gateway, "Gateway autoscaling.", **GATEWAY_FIELD)


@dataclass(frozen=True)
class Effective:
    """A region's settings once the cluster's regionDefaults fill what it leaves unset."""

    replicas: int
    protocol: str
    size: str
    storage_class_name: str | None
    when_deleted: WhenDeleted


def effective(spec: NovaCronRegionSpec, defaults: RegionDefaults) -> Effective:
    st, dst = spec.storage, defaults.storage
    return Effective(
        replicas=spec.replicas if spec.replicas is not None else defaults.replicas,
        protocol=spec.protocol or defaults.protocol,
        size=st.size or dst.size,
        storage_class_name=st.storage_class_name or dst.storage_class_name,
        when_deleted=st.when_deleted or dst.when_deleted,
    )


class SloBurnStatus(Spec):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")
    name: str = Field(description="The SLO: availability or write_latency (docs/observability.md).")
    objective: float = Field(ge=0, le=1, description="Its objective over 30 days, e.g. 0.999.")
    burn_rate_5m: float | None = Field(
        default=None,
        ge=0,
        alias="burnRate5m",
        description="Error-budget burn rate over 5 minutes (1 = on budget; none: no requests).",
    )
    burn_rate_1h: float | None = Field(
        default=None, ge=0, alias="burnRate1h", description="The same over 1 hour."
    )
    burn_rate_6h: float | None = Field(
        default=None, ge=0, alias="burnRate6h", description="The same over 6 hours."
    )


class RegionHealthStatus(Spec):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")
    score: float = Field(ge=0, le=100, description="Regional health score 0-100.")
    node: str = Field(description="The node whose view this is (the leader when one answers).")
    components: dict[str, float] = Field(
        default_factory=dict,
        description="Score of each measured input, 0..1: leader, replication, errors, links, "
        "conflicts (an unmeasured one is left out).",
    )
    slos: list[SloBurnStatus] = Field(
        default_factory=list, description="SLO burn rates, from that node's client requests."
    )
    observed_at: str | None = Field(
        default=None,
        description="When the operator read it (RFC 3339).",
        json_schema_extra={"format": "date-time"},
    )


class NovaCronRegionStatus(CommonStatus):
    replicas: int | None = Field(default=None, description="Current node pods.")
    ready_replicas: int | None = Field(default=None, description="Ready node pods.")
    selector: str | None = Field(default=None, description="Label selector of node pods.")
    leader: str | None = Field(default=None, description="Current leader (from admin API).")
    term: int | None = Field(default=None, description="Current term.")
    commit_index: int | None = Field(default=None, description="Leader commit index.")
    members: list[str] | None = Field(
        default=None, description="Voting members, as the leader's admin API reports them."
    )
    protocol: str | None = Field(
        default=None,
        description="Protocol the nodes run: the one the region was created with (an edit "
        "of spec.protocol is refused with ProtocolSupported=False).",
    )
    health: RegionHealthStatus | None = Field(
        default=None, description="Health score and SLO burn rates (GET /v1/observe/health)."
    )


# --- DWCPFederation ----------------------------------------------------------------------


class Endpoint(Spec):
    host: str = Field(min_length=1, max_length=253, description="Host name or IP.")
    port: int = Field(ge=1, le=65535, description="Port.")


class Member(Spec):
    # pydantic merges this with Spec's config (camelCase aliases, extra="forbid")
    model_config = ConfigDict(
        json_schema_extra=rules(
            cel(
                "has(self.regionRef) != has(self.endpoints)",
                "a member has exactly one of regionRef or endpoints",
            ),
            cel(
                "!has(self.agentEndpoints) || has(self.endpoints)",
                "agentEndpoints is for remote members (endpoints); a local member's agents "
                "are found on its Kubernetes nodes",
                ".agentEndpoints",
            ),
        ),
    )
    name: str = Field(pattern=DNS_LABEL, max_length=40, description="Region name.")
    region_ref: ObjectRef | None = Field(default=None, description="Local NovaCronRegion.")
    endpoints: list[Endpoint] | None = Field(
        default=None, min_length=1, max_length=8, description="Remote region endpoints."
    )
    agent_endpoints: list[Endpoint] | None = Field(
        default=None,
        min_length=1,
        max_length=16,
        description="A remote region's DWCP agents (UDP, port 7946 by default): listed in "
        "topology.json as the member's agents, which this cluster's agents probe over UDP "
        "and exchange link-state with. Unset: they probe the member's endpoints over TCP "
        "(RTT and loss only, no reroute through it).",
        json_schema_extra=AGENT_FIELD,
    )


class Gossip(Spec):
    interval_ms: int = Field(default=1000, ge=50, le=60000, description="Gossip period.")
    fanout: int = Field(default=3, ge=1, le=10, description="Peers per round.")


class AntiEntropy(Spec):
    interval_seconds: int = Field(default=30, ge=1, le=3600, description="Merkle sync period.")


class Replication(Spec):
    mode: Literal["async", "sync"] = Field(default="async", description="Cross-region mode.")
    sync_factor: int = Field(
        default=0, ge=0, le=15, description="Regions to await before answering (sync mode)."
    )


class Failover(Spec):
    mode: Literal["automatic", "manual"] = Field(default="automatic", description="Mode.")
    detection_seconds: int = Field(default=30, ge=1, le=600, description="Time to declare loss.")


CIDR4 = r"^([0-9]{1,3}\.){3}[0-9]{1,3}/([0-9]|[12][0-9]|30)$"


class Tunnels(Spec):
    kind: Literal["none", "vxlan", "gre", "wireguard"] = Field(
        default="none",
        description="Tunnels the agents keep between every pair of agents of different "
        "local member regions: none (measure and route only), vxlan, gre or wireguard. The "
        "agents then run as root with NET_ADMIN (and NET_RAW and /dev/net/tun for the "
        "userspace GRE and WireGuard backends). Remote members are not tunnelled.",
    )
    overlay_cidr: str = Field(
        default="198.19.0.0/16",
        pattern=CIDR4,
        description="Overlay addresses: each tunnel gets a /30 of it, in a fixed order of "
        "the agents (member order, then Kubernetes node name).",
    )

    @field_validator("overlay_cidr")
    @classmethod
    def _network(cls, v: str) -> str:
        ipaddress.IPv4Network(v, strict=False)  # the pattern lets 999.1.1.1 through
        return v

    key_rotation_days: int = Field(
        default=0,
        ge=0,
        le=3650,
        description="WireGuard: replace each region's key pairs (in the Secret the operator "
        "keeps beside its agents) once they are this many days old; 0 never rotates. A "
        "rotated tunnel carries no traffic until both ends have read the new keys (the "
        "kubelet's Secret refresh plus the agents' 30 s reconcile).",
    )


class DWCPFederationSpec(Spec):
    # pydantic merges this with Spec's config (camelCase aliases, extra="forbid")
    model_config = ConfigDict(
        json_schema_extra=rules(
            cel(
                "self.replication.syncFactor < size(self.members)",
                "replication.syncFactor must be less than the number of members",
                ".replication.syncFactor",
            ),
            cel(
                "self.replication.mode != 'sync' || self.replication.syncFactor >= 1",
                "replication.syncFactor must be at least 1 in sync mode",
                ".replication.syncFactor",
            ),
        ),
    )
    cluster_ref: ObjectRef = Field(description="The NovaCronCluster this federation belongs to.")
    members: list[Member] = Field(
        min_length=1,
        max_length=16,
        description="Member regions, local or remote.",
        json_schema_extra=rules(
            cel("self.all(m, self.exists_one(n, n.name == m.name))", "member names must be unique"),
            cel(
                "self.all(m, !has(m.regionRef) || self.exists_one(n, has(n.regionRef) && "
                "n.regionRef.name == m.regionRef.name))",
                "a regionRef may appear in only one member",
            ),
        ),
    )
    gossip: Gossip = sub(Gossip, "Gossip settings.")
    anti_entropy: AntiEntropy = sub(AntiEntropy, "Anti-entropy settings.")
    replication: Replication = sub(Replication, "Replication mode.")
    conflict_policies: ConflictPolicies = sub(ConflictPolicies, "Conflict resolution.")
    failover: Failover = sub(Failover, "Failover policy.")
    tunnels: Tunnels = sub(Tunnels, "Tunnels between the member regions' agents.", **AGENT_FIELD)


class MemberStatus(Spec):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")
    name: str = Field(description="Member name.")
    local: bool = Field(description="Hosted in this Kubernetes cluster.")
    ready: bool = Field(description="Local region Ready, or remote endpoints declared.")
    region: str | None = Field(
        default=None, description="The region name its nodes use (topology.json's region)."
    )
    message: str | None = Field(default=None, description="Why the member is not ready.")


class DWCPFederationStatus(CommonStatus):
    members: list[MemberStatus] = Field(default_factory=list, description="Per member.")
    ready_members: int | None = Field(default=None, description="Members ready.")
