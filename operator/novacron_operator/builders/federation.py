"""DWCPFederation -> the topology its member regions' pods read, and what follows from it.

``{fed}-topology`` key ``topology.json`` is the contract with ``novacron node``
(``federation_file``), ``novacron gateway`` (``--topology``) and ``novacron agent``
(``--topology``): the federation's settings and one entry per member with

- ``region``: the region name its nodes use;
- ``endpoints``: the addresses gossip reaches its nodes at (for a local member every node
  pod's stable peer address ``{obj}-{i}.{obj}-peers.{ns}.svc:7000``, for a remote one the
  endpoints it declares); the gateway dials their hosts on the client port 8080;
- ``agents``: its DWCP agents' UDP addresses (a local member's: the InternalIP of each
  Kubernetes node its agents run on, port 7946, in node-name order; a remote one's:
  ``agentEndpoints``), absent when it has none: agents then probe ``endpoints`` over TCP;
- ``location``: ``[latitude, longitude]`` of a local member that sets ``spec.location``.

Member regions mount it whole at /etc/novacron/federation/ (nodes, gateways); agents get a
copy in their own ConfigMap (they may live in another namespace).
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from novacron_operator import names
from novacron_operator.builders.common import API_PORT, PEER_PORT, Manifest, Owner, meta
from novacron_operator.models import DWCPFederationSpec

AGENT_PORT, AGENT_HTTP_PORT = 7946, 7947  # novacron agent's probe and HTTP ports
WIREGUARD_PORT = 51820


@dataclass(frozen=True, order=True)
class AgentHost:
    """A Kubernetes node a region's agent runs on (hostNetwork: the node's address)."""

    node: str
    ip: str


@dataclass(frozen=True)
class LocalRegion:
    """What the federation needs of a NovaCronRegion it references."""

    region_name: str
    replicas: int
    location: tuple[float, float] | None = None
    # the nodes its agents run on, by node name; empty: no agents (disabled, or no node)
    agents: tuple[AgentHost, ...] = ()


def topology_name(federation: str) -> str:
    return names.topology(federation)


def agent_addresses(hosts: Sequence[AgentHost]) -> list[str]:
    return [f"{h.ip}:{AGENT_PORT}" for h in sorted(hosts)]


def peers(
    owner: Owner, spec: DWCPFederationSpec, regions: Mapping[str, LocalRegion]
) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    seen: set[str] = set()
    for m in spec.members:
        if m.region_ref is not None:
            ref = m.region_ref.name
            if ref in seen:  # the CRD refuses this; an older stored object may still hold it
                continue
            seen.add(ref)
            local = regions.get(ref)
            entry: dict[str, object] = {
                "name": m.name,
                # an unknown regionRef: its nodes' region name is not known, no endpoints
                "region": local.region_name if local else m.name,
                "local": True,
                "endpoints": [
                    names.node_address(ref, owner.namespace, i, PEER_PORT)
                    for i in range(local.replicas if local else 0)
                ],
                # client URLs: a node answering 421 wrong-region names these, so clients
                # (and the CLI) can follow it to the VM's home region
                "http": [
                    "http://" + names.node_address(ref, owner.namespace, i, API_PORT)
                    for i in range(local.replicas if local else 0)
                ],
            }
            if local and local.agents:
                entry["agents"] = agent_addresses(local.agents)
            if local and local.location:
                entry["location"] = list(local.location)
            out.append(entry)
        else:
            eps = [f"{e.host}:{e.port}" for e in m.endpoints or []]
            entry = {"name": m.name, "region": m.name, "local": False, "endpoints": eps}
            if m.agent_endpoints:
                entry["agents"] = [f"{e.host}:{e.port}" for e in m.agent_endpoints]
            out.append(entry)
    return out


def topology(
    owner: Owner, spec: DWCPFederationSpec, regions: Mapping[str, LocalRegion] | None = None
) -> Manifest:
    """The ``topology.json`` document."""
    return {
        "federation": owner.name,
        "members": peers(owner, spec, regions or {}),
        "gossip": spec.gossip.model_dump(by_alias=True),
        "antiEntropy": spec.anti_entropy.model_dump(by_alias=True),
        "replication": spec.replication.model_dump(by_alias=True),
        "conflictPolicies": spec.conflict_policies.model_dump(by_alias=True, exclude_none=True),
        "failover": spec.failover.model_dump(by_alias=True),
    }


def topology_text(doc: Manifest) -> str:
    return json.dumps(doc, indent=2, sort_keys=True)


def agents_view(text: str) -> str:
    """The topology as a region's agents get it: a member with agents is probed at those,
    never at its endpoints, so they are left out (a region scaling its nodes then rolls no
    agent; agents read the file once, at start)."""
    doc = json.loads(text)
    for m in doc.get("members") or []:
        if m.get("agents"):
            m.pop("endpoints", None)
            m.pop("http", None)
    return topology_text(doc)


def gateway_view(text: str) -> str:
    """What a gateway takes from the topology beyond its own config (which lists the local
    regions): the remote members. Its pods roll when this changes."""
    doc = json.loads(text)
    return json.dumps([m for m in doc.get("members") or [] if not m.get("local")], sort_keys=True)


def build_federation(
    owner: Owner, spec: DWCPFederationSpec, regions: Mapping[str, LocalRegion] | None = None
) -> list[Manifest]:
    return [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": meta(owner, topology_name(owner.name), "federation"),
            "data": {"topology.json": topology_text(topology(owner, spec, regions))},
        }
    ]


def federation_of(region: str, federations: Mapping[str, DWCPFederationSpec]) -> str | None:
    """The federation whose topology a region's nodes read: the first, by name, with a
    member referencing it (a node reads one federation file)."""
    for name in sorted(federations):
        if any(m.region_ref and m.region_ref.name == region for m in federations[name].members):
            return name
    return None


# --- agents: names, tunnels -----------------------------------------------------------------


@dataclass(frozen=True)
class TunnelLink:
    """One end of a tunnel, as ``novacron agent``'s ``tunnels.links[]`` takes it."""

    peer: str
    local: str
    remote: str
    address: str
    key: int
    port: int = 0
    remote_port: int = 0

    def as_config(self) -> dict[str, Any]:
        return {
            "peer": self.peer,
            "local": self.local,
            "remote": self.remote,
            "address": self.address,
            "key": self.key,
            "port": self.port,
            "remotePort": self.remote_port,
        }


@dataclass(frozen=True)
class AgentSeat:
    """One agent of the federation: which member, which host, the name its peers use."""

    member: str
    ref: str  # the NovaCronRegion
    host: AgentHost
    name: str


@dataclass(frozen=True)
class AgentPlan:
    """What each agent of the federation is called and which tunnels it keeps."""

    seats: tuple[AgentSeat, ...] = ()
    links: dict[str, tuple[TunnelLink, ...]] = field(default_factory=dict)  # agent -> links
    needed: int = 0  # tunnels the full mesh between local members needs
    capacity: int = 0  # tunnels overlayCIDR holds (one /30 each)

    def of_region(self, ref: str) -> list[AgentSeat]:
        return [s for s in self.seats if s.ref == ref]


def agent_plan(spec: DWCPFederationSpec, regions: Mapping[str, LocalRegion]) -> AgentPlan:
    """Every local member's agents, named as topology.json makes their peers name them, and
    a tunnel between each pair of agents of different members (when ``tunnels.kind`` asks
    for them): a /30 of ``overlayCIDR`` per pair, numbered in a fixed order (member order,
    then node name), the lower end ``.1``; VXLAN VNI / GRE key = pair number + 1; WireGuard
    listen ports 51820 + the peer's position among the agent's tunnels (one interface, so
    one port, per peer)."""
    seats: list[AgentSeat] = []
    seen: set[str] = set()
    for m in spec.members:
        if m.region_ref is None or m.region_ref.name in seen:
            continue
        seen.add(m.region_ref.name)
        local = regions.get(m.region_ref.name)
        hosts = sorted(local.agents) if local else []
        for host, name in zip(hosts, names.agent_member_names(m.name, len(hosts)), strict=True):
            seats.append(AgentSeat(m.name, m.region_ref.name, host, name))
    kind = spec.tunnels.kind
    if kind == "none":
        return AgentPlan(tuple(seats))
    net = ipaddress.IPv4Network(spec.tunnels.overlay_cidr, strict=False)
    capacity = net.num_addresses // 4
    pairs = [
        (i, k) for k in range(len(seats)) for i in range(k) if seats[i].member != seats[k].member
    ]
    ends: dict[str, list[tuple[str, int, int]]] = {s.name: [] for s in seats}  # peer, pair#, me
    for p, (i, k) in enumerate(pairs[:capacity]):
        ends[seats[i].name].append((seats[k].name, p, 1))
        ends[seats[k].name].append((seats[i].name, p, 2))
    by_name = {s.name: s for s in seats}
    position = {(a, peer): j for a, items in ends.items() for j, (peer, _, _) in enumerate(items)}
    links: dict[str, tuple[TunnelLink, ...]] = {}
    for a, items in ends.items():
        out = []
        for peer, p, end in items:
            subnet = net.network_address + 4 * p
            port = remote_port = 0
            if kind == "wireguard":
                port = WIREGUARD_PORT + position[(a, peer)]
                remote_port = WIREGUARD_PORT + position[(peer, a)]
            out.append(
                TunnelLink(
                    peer,
                    by_name[a].host.ip,
                    by_name[peer].host.ip,
                    f"{subnet + end}/30",
                    p + 1,
                    port,
                    remote_port,
                )
            )
        links[a] = tuple(out)
    return AgentPlan(tuple(seats), links, len(pairs), capacity)
