"""The federation file a node reads (``--federation-file``; the operator renders it from a
``DWCPFederation`` into a ConfigMap) and the plan a node derives from it.

The file (JSON)::

    {"federation": NAME,
     "members": [{"name": M, "region": REGION, "local": bool,
                  "endpoints": ["host:port", ...],       # peer addresses
                  "http": ["http://host:port", ...]},    # optional: client URLs (421s)
                 ...],
     "gossip": {"intervalMs": int, "fanout": int},
     "antiEntropy": {"intervalSeconds": int},
     "replication": {"mode": "async" | "sync", "syncFactor": int},
     "conflictPolicies": {...}, "failover": {...},
     "ipam": {"pools": {REGION: CIDR, ...}},      # optional (conflict/ipam.py defaults)
     "fencing": {REGION: EPOCH, ...}}             # optional (the DR orchestrator's epochs)

``conflictPolicies`` is :class:`novacron_core.conflict.policy.Policies` (where writes are
accepted, which strategies decide which fields); an invalid one refuses the whole file with
the path of the problem, like any other field.

``endpoints`` are the peer-port addresses of every node of that member region. A node finds
its own region among the members by ``region``; its siblings' endpoints are its in-region
federation peers, the other members' endpoints its remote ones. A federation replica is
named by the address it is dialled at, so a node is known as its own peer address (its
entry in ``peers``), which must be how its region's member lists it.

Parsing is strict about types (no "3" for 3) and ignores keys it does not know, so an
operator newer than the node can add some. Errors name the field.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from novacron_core.conflict import ipam
from novacron_core.conflict import policy as conflict_policy
from novacron_core.conflict.policy import Policies, PolicyError
from novacron_core.sync.engine import SyncConfig

# what a replica runs with when the file leaves a section out
DEFAULT_SYNC = SyncConfig(interval=0.1, fanout=3, cross_region=1, ae_interval=1.0, eager=True)
HEARTBEAT_INTERVAL = 0.2  # a home leader's replication-lag mark (seconds)
# replication.mode sync: how long a write waits for syncFactor other regions' acknowledgements
# before its client is told the outcome is unknown (committed at home, replication not known)
SYNC_TIMEOUT = 2.0


class _Model(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore", populate_by_name=True)


class Gossip(_Model):
    interval_ms: int = Field(alias="intervalMs", ge=10, le=600_000)
    fanout: int = Field(ge=1, le=64)


class AntiEntropy(_Model):
    interval_seconds: int = Field(alias="intervalSeconds", ge=1, le=86_400)


class Replication(_Model):
    mode: Literal["async", "sync"] = "async"
    sync_factor: int = Field(default=0, alias="syncFactor", ge=0)


class Member(_Model):
    name: str = Field(min_length=1)
    region: str = Field(min_length=1)
    local: bool = False
    endpoints: list[str] = Field(default_factory=list)
    http: list[str] = Field(default_factory=list)

    @field_validator("http")
    @classmethod
    def _urls(cls, value: list[str]) -> list[str]:
        for i, url in enumerate(value):
            if not url.startswith(("http://", "https://")) or len(url) < 10:
                raise ValueError(f"http {i}: a URL (http://host:port) expected, not {url!r}")
        return value

    @field_validator("endpoints")
    @classmethod
    def _host_ports(cls, value: list[str]) -> list[str]:
        for i, ep in enumerate(value):
            host, sep, port = ep.rpartition(":")
            if not (sep and host and port.isdigit() and 0 < int(port) < 65536):
                raise ValueError(f"endpoint {i}: host:port expected, not {ep!r}")
        return value


class Ipam(_Model):
    pools: dict[str, str] = Field(default_factory=dict)

    @field_validator("pools")
    @classmethod
    def _cidrs(cls, value: dict[str, str]) -> dict[str, str]:
        ipam.parse_pools(value)  # raises naming the region
        return value


class FederationFile(_Model):
    federation: str = Field(min_length=1)
    members: list[Member] = Field(min_length=1)
    gossip: Gossip | None = None
    anti_entropy: AntiEntropy | None = Field(default=None, alias="antiEntropy")
    replication: Replication = Field(default_factory=Replication)
    conflict_policies: dict[str, Any] = Field(default_factory=dict, alias="conflictPolicies")
    failover: dict[str, Any] = Field(default_factory=dict)
    ipam: Ipam = Field(default_factory=Ipam)
    fencing: dict[str, int] = Field(default_factory=dict)

    @field_validator("conflict_policies")
    @classmethod
    def _policies(cls, value: dict[str, Any]) -> dict[str, Any]:
        try:
            conflict_policy.parse(value)
        except PolicyError as e:
            raise ValueError(str(e)) from None
        return value

    @field_validator("fencing")
    @classmethod
    def _epochs(cls, value: dict[str, int]) -> dict[str, int]:
        for region, epoch in value.items():
            if epoch < 0:
                raise ValueError(f"{region}: an epoch is >= 0")
        return value

    def policies(self) -> Policies:
        return conflict_policy.parse(self.conflict_policies)

    def pools(self) -> dict[str, str]:
        pools = ipam.default_pools([m.region for m in self.members])
        pools.update(self.ipam.pools)
        return pools

    @field_validator("members")
    @classmethod
    def _unique_regions(cls, value: list[Member]) -> list[Member]:
        seen: set[str] = set()
        for m in value:
            if m.region in seen:
                raise ValueError(f"region {m.region!r} is listed by two members")
            seen.add(m.region)
        return value


class FederationFileError(ValueError):
    """The file is missing or not a valid federation file; the message names the field."""


def parse(text: str, source: str = "federation file") -> FederationFile:
    try:
        raw = json.loads(text)
    except ValueError as e:
        raise FederationFileError(f"{source}: not valid JSON: {e}") from None
    if not isinstance(raw, dict):
        raise FederationFileError(f"{source}: a JSON object expected")
    try:
        return FederationFile.model_validate(raw)
    except ValidationError as e:
        problems = "; ".join(_problem(err) for err in e.errors())
        raise FederationFileError(f"{source}: {problems}") from None


def _problem(err: Any) -> str:
    where = ".".join(str(x) for x in err["loc"]) or "(top)"
    msg = str(err["msg"]).removeprefix("Value error, ")
    if msg.startswith(where + "."):
        return msg  # the message names the path inside the field already
    return f"{where}: {msg}"


def load(path: str | Path) -> FederationFile:
    try:
        text = Path(path).read_text()
    except OSError as e:
        raise FederationFileError(f"{path}: cannot read the federation file: {e}") from None
    return parse(text, str(path))


@dataclass(frozen=True)
class FederationPlan:
    """What one node's federation replica runs with (sans-IO input of the region machine)."""

    name: str
    region: str
    member: bool  # this node's region is among the federation's members
    peers: Mapping[str, str]  # federation replica id (its address) -> its region
    sync: SyncConfig = DEFAULT_SYNC
    heartbeat_interval: float = HEARTBEAT_INTERVAL
    # what the file asks that this node does not do (reported in /v1/federation/status)
    not_honoured: Mapping[str, str] = field(default_factory=dict)
    # replication.mode sync: a VM write is answered once this many other regions hold it
    sync_factor: int = 0
    sync_timeout: float = SYNC_TIMEOUT
    # the conflict engine's configuration (conflictPolicies, ipam, fencing)
    policies: Policies = field(default_factory=Policies)
    pools: Mapping[str, str] = field(default_factory=dict)
    fencing: Mapping[str, int] = field(default_factory=dict)


def plan(doc: FederationFile, region: str, me: str) -> FederationPlan:
    """The plan of the node whose own federation address is ``me`` in ``region``."""
    peers: dict[str, str] = {}
    member = any(m.region == region for m in doc.members)
    if member:
        for m in doc.members:
            for ep in m.endpoints:
                if ep != me:
                    peers[ep] = m.region
    sync = DEFAULT_SYNC
    if doc.gossip is not None:
        sync = replace(sync, interval=doc.gossip.interval_ms / 1000, fanout=doc.gossip.fanout)
    if doc.anti_entropy is not None:
        sync = replace(sync, ae_interval=float(doc.anti_entropy.interval_seconds))
    not_honoured: dict[str, str] = {}
    sync_factor = 0
    if doc.replication.mode == "sync":
        sync_factor = doc.replication.sync_factor
        others = len({r for r in peers.values() if r != region})
        if not 1 <= sync_factor <= others:
            not_honoured["replication"] = (
                f"mode sync with syncFactor {sync_factor}, but this region has {others} other "
                "member region(s) with endpoints: writes are answered once committed in their "
                "home region and reach the others asynchronously"
            )
            sync_factor = 0
    if doc.failover:
        not_honoured["failover"] = "no DR orchestrator yet: a lost region's VMs are not rehomed"
    return FederationPlan(
        doc.federation,
        region,
        member,
        peers,
        sync,
        HEARTBEAT_INTERVAL,
        not_honoured,
        sync_factor,
        policies=doc.policies(),
        pools=doc.pools(),
        fencing=dict(doc.fencing),
    )
