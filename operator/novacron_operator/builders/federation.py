"""DWCPFederation -> the topology ConfigMap the member regions' nodes read.

``{fed}-topology`` key ``topology.json`` (the contract with ``novacron node``'s
``federation_file``): the federation's settings and one entry per member with the region
name its nodes use and the addresses gossip reaches them at: for a local member every node
pod's stable peer address (``{obj}-{i}.{obj}-peers.{ns}.svc:7000``), for a remote one the
endpoints it declares. Member regions mount it whole at /etc/novacron/federation/.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

from novacron_operator.builders.common import PEER_PORT, Manifest, Owner, meta
from novacron_operator.builders.region import node_address
from novacron_operator.models import DWCPFederationSpec


@dataclass(frozen=True)
class LocalRegion:
    """What the federation needs of a NovaCronRegion it references."""

    region_name: str
    replicas: int


def topology_name(federation: str) -> str:
    return f"{federation}-topology"


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
            region_owner = Owner("NovaCronRegion", ref, owner.namespace, "")
            out.append(
                {
                    "name": m.name,
                    # an unknown regionRef: its nodes' region name is not known, no endpoints
                    "region": local.region_name if local else m.name,
                    "local": True,
                    "endpoints": [
                        node_address(region_owner, i, PEER_PORT)
                        for i in range(local.replicas if local else 0)
                    ],
                }
            )
        else:
            eps = [f"{e.host}:{e.port}" for e in m.endpoints or []]
            out.append({"name": m.name, "region": m.name, "local": False, "endpoints": eps})
    return out


def build_federation(
    owner: Owner, spec: DWCPFederationSpec, regions: Mapping[str, LocalRegion] | None = None
) -> list[Manifest]:
    topology = {
        "federation": owner.name,
        "members": peers(owner, spec, regions or {}),
        "gossip": spec.gossip.model_dump(by_alias=True),
        "antiEntropy": spec.anti_entropy.model_dump(by_alias=True),
        "replication": spec.replication.model_dump(by_alias=True),
        "conflictPolicies": spec.conflict_policies.model_dump(by_alias=True),
        "failover": spec.failover.model_dump(by_alias=True),
    }
    return [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": meta(owner, topology_name(owner.name), "federation"),
            "data": {"topology.json": json.dumps(topology, indent=2, sort_keys=True)},
        }
    ]


def federation_of(region: str, federations: Mapping[str, DWCPFederationSpec]) -> str | None:
    """The federation whose topology a region's nodes read: the first, by name, with a
    member referencing it (a node reads one federation file)."""
    for name in sorted(federations):
        if any(m.region_ref and m.region_ref.name == region for m in federations[name].members):
            return name
    return None
