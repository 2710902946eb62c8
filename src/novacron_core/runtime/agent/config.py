"""The agent's configuration, from whichever of these it is given (later ones win):

1. ``region.json`` as the operator renders it (``builders/region.py`` ``region_info``):
   ``region``, ``zones`` (and ``cluster``, ``nodes``, ``ports``, ``tls``, ``protocol``, which
   the agent does not need and accepts);
2. the federation's ``topology.json`` (``builders/federation.py``): each other member becomes
   a peer: probed agent-to-agent over UDP at its ``agents`` endpoints when it lists them,
   else by TCP connects to its ``endpoints`` (the nodes' peer port: RTT and loss, no
   adverts);
3. the agent's own keys (``name``, ``listen``, ``http``, ``peers``, ``probe``, ``tunnels``),
   in either file or as flags.

A bad value is a :class:`ConfigError` naming the field (``peers[1].address: ...``).
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic.alias_generators import to_camel

PROBE_PORT = 7946  # UDP probes and TCP bandwidth samples (Serf's port: agents are its kin)
HTTP_PORT = 7947
# keys of region.json / topology.json that describe other components: accepted, unused
PASSTHROUGH = {
    "cluster", "protocol", "nodes", "ports", "tls", "federation", "gossip", "antiEntropy",
    "replication", "conflictPolicies", "failover", "members",
}  # fmt: skip


class ConfigError(ValueError):
    pass


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


def _hostport(v: str, what: str = "address") -> str:
    host, sep, port = v.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{what} must be host:port, not {v!r}")
    return v


class Peer(_Model):
    name: str = Field(min_length=1, max_length=63)
    region: str = ""
    address: str  # host:port
    mode: Literal["agent", "tcp"] = "agent"

    @field_validator("address")
    @classmethod
    def _addr(cls, v: str) -> str:
        return _hostport(v)


class Probe(_Model):
    interval_ms: int = Field(default=100, ge=10, le=60_000)
    down_after: int = Field(default=3, ge=1, le=100)
    min_timeout_ms: int = Field(default=150, ge=1, le=60_000)
    max_timeout_ms: int = Field(default=600, ge=1, le=120_000)
    bandwidth_interval_s: float = Field(default=0.0, ge=0, le=86_400)  # 0: no transfers
    bandwidth_bytes: int = Field(default=1 << 20, ge=1024, le=1 << 30)


class TunnelLink(_Model):
    peer: str
    local: str  # underlay address here
    remote: str  # underlay address of the peer
    address: str  # overlay CIDR of this end
    key: int = 0  # VXLAN VNI / GRE key
    port: int = 0
    remote_port: int = 0


class Tunnels(_Model):
    kind: Literal["none", "vxlan", "gre", "wireguard"] = "none"
    keys_dir: str | None = None  # the mounted Secret (WireGuard): <member>.key, <member>.pub
    links: list[TunnelLink] = Field(default_factory=list)
    keep_on_exit: bool = True
    state_dir: str = "/run/novacron/tunnels"
    reconcile_s: float = Field(default=30.0, ge=1, le=3600)


class AgentConfig(_Model):
    name: str = Field(min_length=1, max_length=63)
    region: str = Field(min_length=1, max_length=63)
    zones: list[str] = Field(default_factory=list)
    latitude: float | None = Field(default=None, ge=-90, le=90)
    longitude: float | None = Field(default=None, ge=-180, le=180)
    listen: str = f"0.0.0.0:{PROBE_PORT}"
    http: str = f"0.0.0.0:{HTTP_PORT}"
    peers: list[Peer] = Field(default_factory=list)
    probe: Probe = Field(default_factory=Probe)
    tunnels: Tunnels = Field(default_factory=Tunnels)

    @field_validator("listen", "http")
    @classmethod
    def _addr(cls, v: str) -> str:
        return _hostport(v)

    def peer_names(self) -> list[str]:
        return [p.name for p in self.peers]


def split_hostport(v: str) -> tuple[str, int]:
    host, _, port = v.rpartition(":")
    return host.strip("[]"), int(port)


def _read(path: str) -> dict[str, Any]:
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}") from None
    try:
        if path.endswith((".yaml", ".yml")):
            import yaml

            data = yaml.safe_load(text) or {}
        else:
            data = json.loads(text)
    except ValueError as e:
        raise ConfigError(
            f"{path}: not valid {'YAML' if 'yaml' in path else 'JSON'}: {e}"
        ) from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be an object")
    return data


def peers_from_topology(topology: dict[str, Any], me_region: str) -> list[dict[str, Any]]:
    """The federation ConfigMap's members (other than our region) as peers."""
    members = topology.get("members")
    if not isinstance(members, list):
        raise ConfigError("members: the topology must list its members")
    out = []
    for i, m in enumerate(members):
        if not isinstance(m, dict) or not isinstance(m.get("name"), str):
            raise ConfigError(f"members[{i}].name: every member needs a name")
        region = m.get("region") or m["name"]
        if region == me_region:
            continue
        agents = m.get("agents") or []
        endpoints = m.get("endpoints") or []
        if not isinstance(agents, list) or not isinstance(endpoints, list):
            raise ConfigError(f"members[{i}].endpoints: a list of host:port")
        chosen, mode = (agents, "agent") if agents else (endpoints, "tcp")
        if not chosen:
            raise ConfigError(f"members[{i}].endpoints: member {m['name']!r} has none")
        for j, ep in enumerate(chosen):
            name = m["name"] if len(chosen) == 1 else f"{m['name']}-{j}"
            out.append({"name": name, "region": region, "address": ep, "mode": mode})
    return out


def default_name(region: str) -> str:
    """One agent per node: ``<region>-<node>`` (NODE_NAME from the DaemonSet's downward API,
    else the host name)."""
    node = os.environ.get("NODE_NAME") or socket.gethostname().split(".")[0]
    return f"{region}-{node}"


def load_config(
    config: str | None = None,
    topology: str | None = None,
    overrides: dict[str, Any] | None = None,
) -> AgentConfig:
    data: dict[str, Any] = {}
    topo: dict[str, Any] | None = None
    if config:
        data = _read(config)
        if "members" in data:
            topo = data
    if topology:
        topo = _read(topology)
    extra_peers = list((overrides or {}).pop("peers", None) or [])
    data = {k: v for k, v in data.items() if k not in PASSTHROUGH}
    for k, v in (overrides or {}).items():
        if v is None:
            continue
        base = data.get(k)
        data[k] = {**base, **v} if isinstance(v, dict) and isinstance(base, dict) else v
    if "region" not in data:
        raise ConfigError("region: missing (give --region or a region.json with 'region')")
    data.setdefault("name", os.environ.get("NOVACRON_AGENT_NAME") or default_name(data["region"]))
    peers = list(data.get("peers") or [])
    if topo is not None:
        peers += peers_from_topology(topo, str(data["region"]))
    data["peers"] = peers + extra_peers
    try:
        cfg = AgentConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_explain(e)) from None
    names = cfg.peer_names()
    for i, n in enumerate(names):
        if n == cfg.name or n in names[:i]:
            raise ConfigError(
                f"peers[{i}].name: {n!r} is {'us' if n == cfg.name else 'a duplicate'}"
            )
    _check_tunnels(cfg)
    return cfg


def _check_tunnels(cfg: AgentConfig) -> None:
    t = cfg.tunnels
    if t.kind == "none":
        return
    names = set(cfg.peer_names())
    for i, link in enumerate(t.links):
        for fname in ("local", "remote"):
            try:
                ipaddress.IPv4Address(getattr(link, fname))
            except ValueError:
                raise ConfigError(f"tunnels.links[{i}].{fname}: an IPv4 address") from None
        if link.peer not in names:
            raise ConfigError(f"tunnels.links[{i}].peer: {link.peer!r} is not among the peers")
    if t.kind == "wireguard" and not t.keys_dir:
        raise ConfigError("tunnels.keysDir: WireGuard needs the directory its Secret is mounted at")


def _explain(e: ValidationError) -> str:
    parts = []
    for err in e.errors():
        loc = ""
        for x in err["loc"]:
            loc += f"[{x}]" if isinstance(x, int) else (f".{x}" if loc else str(x))
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown field"
        parts.append(f"{loc}: {msg}")
    return "; ".join(parts)
