"""What a region's pass and a federation's pass both need to know about a federation: its
local member regions as the topology lists them (regionDefaults applied, agents placed on
the Kubernetes nodes they run on), the agents' names and tunnels, and the WireGuard keys.

Both passes compute the topology with the same functions from the same cached objects, so
the ConfigMap the federation writes and the copy a region's agents get are the same text.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from novacron_operator import names
from novacron_operator.builders.agent import (
    KEYS_CREATED,
    PUBLIC_KEYS,
    AgentSetup,
    agent_hosts,
    wireguard_secret,
)
from novacron_operator.builders.common import API_PORT, Owner
from novacron_operator.builders.federation import (
    AgentHost,
    AgentPlan,
    AgentSeat,
    LocalRegion,
    agent_plan,
    topology,
    topology_text,
)
from novacron_operator.builders.gateway import GatewayRegion
from novacron_operator.builders.region import RegionContext, agents_deployed, region_selector
from novacron_operator.models import DWCPFederationSpec, NovaCronClusterSpec, NovaCronRegionSpec

Obj = dict[str, Any]
log = logging.getLogger("novacron.operator")


@dataclass(frozen=True)
class Member:
    """A NovaCronRegion of the namespace, parsed, with what the federation needs of it."""

    obj: Obj
    spec: NovaCronRegionSpec
    local: LocalRegion


def local_regions(
    regions: Iterable[Obj], clusters: Iterable[Obj], nodes: Iterable[Obj]
) -> dict[str, Member]:
    """The namespace's valid NovaCronRegions by object name (regionDefaults applied; agents
    on the nodes their DaemonSet selects, when deployed)."""
    by_name = {c["metadata"]["name"]: c for c in clusters}
    node_list = list(nodes)
    out: dict[str, Member] = {}
    for r in regions:
        if r["metadata"].get("deletionTimestamp"):
            continue
        try:
            spec = NovaCronRegionSpec.model_validate(r.get("spec") or {})
            cluster = by_name.get(spec.cluster_ref.name)
            cspec = NovaCronClusterSpec.model_validate((cluster or {}).get("spec") or {})
        except ValidationError:
            continue
        eff = RegionContext(cspec, spec.cluster_ref.name).eff(spec)
        hosts: tuple[AgentHost, ...] = ()
        if agents_deployed(spec):
            hosts = agent_hosts(node_list, region_selector(spec))
        loc = (spec.location.latitude, spec.location.longitude) if spec.location else None
        out[r["metadata"]["name"]] = Member(
            r, spec, LocalRegion(spec.region_name, eff.replicas, loc, hosts)
        )
    return out


@dataclass(frozen=True)
class Federated:
    """A region's view of its federation for one pass."""

    topology: str | None = None
    gateway_peers: tuple[GatewayRegion, ...] = ()
    agents: AgentSetup | None = None
    probe_hosts: tuple[str, ...] = ()
    plan: AgentPlan | None = None


def view(
    region: str,
    namespace: str,
    spec: NovaCronRegionSpec,
    federation: tuple[Owner, DWCPFederationSpec] | None,
    members: Mapping[str, Member],
) -> Federated:
    """What region ``region`` (object name) reads about its federation (None: it is in none:
    its agents, named after the region, have no peers)."""
    locals_ = {n: m.local for n, m in members.items()}
    me = locals_.get(region)
    if federation is None:
        hosts = sorted(me.agents) if me else []
        seats = tuple(
            AgentSeat(spec.region_name, region, h, n)
            for h, n in zip(
                hosts, names.agent_member_names(spec.region_name, len(hosts)), strict=True
            )
        )
        return Federated(agents=AgentSetup(seats))
    owner, fspec = federation
    plan = agent_plan(fspec, locals_)
    peers: list[GatewayRegion] = []
    for m in fspec.members:
        ref = m.region_ref.name if m.region_ref else None
        if ref is None or ref == region or ref not in members:
            continue
        other = members[ref]
        peers.append(
            GatewayRegion(
                other.local.region_name,
                (names.service_address(ref, namespace, API_PORT),),
                other.local.location,
            )
        )
    setup = AgentSetup(tuple(plan.of_region(region)), fspec.tunnels.kind, plan.links)
    return Federated(
        topology=topology_text(topology(owner, fspec, locals_)),
        gateway_peers=tuple(peers),
        agents=setup,
        probe_hosts=tuple(sorted({s.host.ip for s in plan.seats})),
        plan=plan,
    )


# --- WireGuard keys -------------------------------------------------------------------------


def _decode(secret: Obj | None) -> dict[str, str]:
    """``<agent>.key`` entries of a key Secret (private keys, base64 as WireGuard has them)."""
    data = (secret or {}).get("data") or {}
    return {
        k[: -len(".key")]: base64.b64decode(v).decode()
        for k, v in data.items()
        if k.endswith(".key")
    }


def public_keys(secret: Obj | None) -> dict[str, str]:
    raw = (((secret or {}).get("metadata") or {}).get("annotations") or {}).get(PUBLIC_KEYS)
    try:
        got = json.loads(raw) if raw else {}
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in got.items()} if isinstance(got, dict) else {}


def rotation_due(secret: Obj | None, days: int, now: dt.datetime) -> bool:
    if secret is None or days <= 0:
        return False
    made = ((secret.get("metadata") or {}).get("annotations") or {}).get(KEYS_CREATED, "")
    try:
        when = dt.datetime.fromisoformat(made.replace("Z", "+00:00"))
    except ValueError:
        return True  # no record of when: treat as old
    return now - when >= dt.timedelta(days=days)


def keys_secret(
    owner: Owner,
    agent_ns: str,
    agent_name: str,
    seats: list[AgentSeat],
    live: Obj | None,
    others: Mapping[str, str],
    rotate_days: int,
    now: dt.datetime,
) -> tuple[Obj, bool]:
    """The region's key Secret: the live keys of its agents kept (new agents get a new
    pair), all replaced when ``rotate_days`` have passed since they were made; ``others``:
    every other agent's public key. Returns it and whether this region's public keys
    change (the other regions' Secrets then need them)."""
    from novacron_core.tunnels.spec import generate_private_key

    rotate = rotation_due(live, rotate_days, now)
    have = {} if rotate else _decode(live)
    private = {s.name: have.get(s.name) or generate_private_key() for s in seats}
    # a new agent's pair is younger than the rest: the next rotation replaces all together
    kept = ((live or {}).get("metadata") or {}).get("annotations") or {}
    created = (None if rotate else kept.get(KEYS_CREATED)) or now.strftime("%Y-%m-%dT%H:%M:%SZ")
    secret = wireguard_secret(owner, agent_ns, agent_name, private, others, created)
    changed = public_keys(secret) != public_keys(live)
    if rotate:
        log.info("%s/%s: WireGuard keys rotated", owner.namespace, owner.name)
    return secret, changed
