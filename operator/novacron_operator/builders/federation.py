"""DWCPFederation -> the shared topology/peer ConfigMap every node and agent reads."""

from __future__ import annotations

import json

from novacron_operator.builders.common import PEER_PORT, Manifest, Owner, meta
from novacron_operator.models import DWCPFederationSpec


def peers(owner: Owner, spec: DWCPFederationSpec) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    for m in spec.members:
        if m.region_ref is not None:
            host = f"{m.region_ref.name}.{owner.namespace}.svc"
            out.append({"name": m.name, "local": True, "endpoints": [f"{host}:{PEER_PORT}"]})
        else:
            eps = [f"{e.host}:{e.port}" for e in m.endpoints or []]
            out.append({"name": m.name, "local": False, "endpoints": eps})
    return out


def build_federation(owner: Owner, spec: DWCPFederationSpec) -> list[Manifest]:
    topology = {
        "federation": owner.name,
        "members": peers(owner, spec),
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
            "metadata": meta(owner, f"{owner.name}-topology", "federation"),
            "data": {"topology.json": json.dumps(topology, indent=2, sort_keys=True)},
        }
    ]
