"""Gateway configuration: a file (three shapes accepted) plus flags, flags winning.

Shapes of ``--config FILE`` (JSON or YAML), told apart by their keys:

- the gateway's own (``regions: [{name, seeds | backends, location?}]`` and the
  settings below);
- the operator's ``region.json`` (``{"region", "nodes": "host:port", "ports", ...}``):
  one region, its nodes discovered through the ``nodes`` address;
- the federation's ``topology.json`` (``{"members": [{"name", "region"?, "endpoints"}]}``):
  every member region, discovered through its endpoints' hosts on the client API port.

``--topology FILE`` adds a topology's regions to whatever ``--config`` gave (the operator's
region.json names only the local region).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from novacron_core.balancing import (
    ALGORITHMS,
    CheckSpec,
    CircuitSpec,
    GeoPoint,
    OutlierSpec,
    PoolSpec,
    SlowStart,
)
from novacron_core.runtime.gateway.federation import FederationAdapter, RegionSeed


class ConfigError(ValueError):
    """A configuration problem, naming the field and what to do."""


def split_host_port(value: str, field: str) -> tuple[str, int]:
    host, sep, port = value.strip().rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ConfigError(f"{field}: host:port expected, not {value!r}")
    return host.strip("[]"), int(port)


class RegionConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    seeds: list[str] = Field(default_factory=list)
    backends: list[str] = Field(default_factory=list)
    location: tuple[float, float] | None = None
    priority: int = Field(default=0, ge=0)
    weight: int = Field(default=1, ge=1)
    zone: str = ""

    @field_validator("seeds", "backends")
    @classmethod
    def _addresses(cls, v: list[str]) -> list[str]:
        for a in v:
            split_host_port(a, "address")
        return v

    def seed(self) -> RegionSeed:
        return RegionSeed(
            self.name,
            tuple(self.seeds),
            tuple(self.backends),
            self.location,
            self.weight,
            self.priority,
            self.zone,
        )


class GatewayConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    listen: str = "0.0.0.0:8443"
    admin_listen: str | None = "0.0.0.0:9090"
    region: str | None = None  # the gateway's own region (default: the first)
    regions: list[RegionConfig] = Field(default_factory=list)
    api_port: int = Field(default=8080, ge=1, le=65535)
    # balancing
    algorithm: str = "least_request"
    affinity: Literal["none", "ring", "maglev"] = "none"
    affinity_header: str = "X-Session-Id"
    vnodes: int = Field(default=150, ge=1)
    maglev_size: int = Field(default=0, ge=0)
    overprovisioning: float = Field(default=1.4, ge=1.0)
    panic_threshold: float = Field(default=50.0, ge=0, le=100)
    slow_start_s: float = Field(default=10.0, ge=0)
    health: dict[str, Any] = Field(default_factory=dict)
    outlier: dict[str, Any] = Field(default_factory=dict)
    circuit: dict[str, Any] = Field(default_factory=dict)
    coordinates: dict[str, dict[str, float]] = Field(default_factory=dict)  # RTT ms
    # discovery and draining
    discovery_interval_s: float = Field(default=2.0, gt=0)
    drain_timeout_s: float = Field(default=30.0, ge=0)
    # time limits
    connect_timeout_s: float = Field(default=1.0, gt=0)
    upstream_timeout_s: float = Field(default=15.0, gt=0)
    retry_window_s: float = Field(default=5.0, ge=0)
    header_timeout_s: float = Field(default=10.0, gt=0)
    keepalive_timeout_s: float = Field(default=60.0, gt=0)
    upstream_idle_s: float = Field(default=30.0, gt=0)
    shutdown_timeout_s: float = Field(default=15.0, ge=0)
    # size and count limits
    max_connections: int = Field(default=20_000, ge=1)
    max_inflight: int = Field(default=4096, ge=1)
    max_body_bytes: int = Field(default=4 << 20, ge=0)
    replay_limit_bytes: int = Field(default=64 << 10, ge=0)
    max_idle_per_backend: int = Field(default=256, ge=0)
    # exposure and TLS
    expose_admin: bool = False
    tls_cert: str | None = None
    tls_key: str | None = None
    upstream_ca: str | None = None  # set: talk HTTPS to the nodes, verified by this CA

    @field_validator("algorithm")
    @classmethod
    def _algorithm(cls, v: str) -> str:
        if v not in ALGORITHMS:
            raise ValueError(f"one of {', '.join(ALGORITHMS)}")
        return v

    @field_validator("listen", "admin_listen")
    @classmethod
    def _listen(cls, v: str | None) -> str | None:
        if v is not None:
            split_host_port(v, "listen")
        return v

    def home(self) -> str:
        if self.region is not None:
            return self.region
        if not self.regions:
            raise ConfigError(
                "no regions: give --config (gateway config, region.json or topology.json), "
                "--topology, --seed REGION=HOST:PORT or --backend REGION=HOST:PORT"
            )
        return self.regions[0].name

    def pool_spec(self) -> PoolSpec:
        try:
            return PoolSpec(
                algorithm=self.algorithm,
                affinity=self.affinity,
                vnodes=self.vnodes,
                maglev_size=self.maglev_size,
                overprovisioning=self.overprovisioning,
                panic_threshold=self.panic_threshold,
                slow_start=SlowStart(window_s=self.slow_start_s),
                health=CheckSpec(**_tuple_fields(self.health)),
                outlier=OutlierSpec(**self.outlier),
                circuit=CircuitSpec(**self.circuit),
                drain_timeout_s=self.drain_timeout_s,
            )
        except TypeError as e:  # an unknown key in health/outlier/circuit
            raise ConfigError(f"health/outlier/circuit: {e}") from None
        except ValueError as e:
            raise ConfigError(str(e)) from None

    def locations(self) -> dict[str, GeoPoint]:
        out = {}
        for r in self.regions:
            if r.location is not None:
                try:
                    out[r.name] = GeoPoint(*r.location)
                except ValueError as e:
                    raise ConfigError(f"regions[{r.name}].location: {e}") from None
        return out


def _tuple_fields(d: dict[str, Any]) -> dict[str, Any]:
    out = dict(d)
    if isinstance(out.get("expect_status"), list):
        out["expect_status"] = tuple(out["expect_status"])
    return out


def read_doc(path: str) -> dict[str, Any]:
    try:
        text = Path(path).read_text()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read ({e.strerror})") from None
    try:
        doc = yaml.safe_load(text) if path.endswith((".yaml", ".yml")) else json.loads(text)
    except (ValueError, yaml.YAMLError) as e:
        kind = "YAML" if path.endswith(("yaml", "yml")) else "JSON"
        raise ConfigError(f"{path}: not valid {kind}: {e}") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: a JSON/YAML object expected")
    return doc


def from_doc(doc: dict[str, Any], source: str) -> dict[str, Any]:
    """Gateway settings from any of the three accepted shapes."""
    if "members" in doc:
        api_port = int(doc.get("apiPort", 8080))
        try:
            seeds = FederationAdapter(api_port).regions_from_topology(doc)
        except ValueError as e:
            raise ConfigError(f"{source}: {e}") from None
        return {"regions": [{"name": s.name, "seeds": list(s.seeds)} for s in seeds]}
    if "nodes" in doc and "region" in doc and "regions" not in doc:
        ports = doc.get("ports") or {}
        values: dict[str, Any] = {
            "region": doc["region"],
            "regions": [{"name": doc["region"], "seeds": [doc["nodes"]]}],
        }
        if isinstance(ports, dict) and isinstance(ports.get("api"), int):
            values["api_port"] = ports["api"]
        return values
    return dict(doc)


def load_config(
    config_file: str | None = None,
    topology_file: str | None = None,
    seeds: tuple[str, ...] = (),
    backends: tuple[str, ...] = (),
    **flags: Any,
) -> GatewayConfig:
    values: dict[str, Any] = {}
    if config_file:
        values = from_doc(read_doc(config_file), config_file)
    regions: dict[str, dict[str, Any]] = {r["name"]: dict(r) for r in values.pop("regions", [])}
    if topology_file:
        for r in from_doc(read_doc(topology_file), topology_file).get("regions", []):
            if r["name"] in regions:  # the config's own entry (e.g. region.json) wins
                continue
            regions[r["name"]] = r
    for kind, items in (("seeds", seeds), ("backends", backends)):
        for item in items:
            name, sep, addrs = item.partition("=")
            if not sep or not name or not addrs:
                flag = "--seed" if kind == "seeds" else "--backend"
                raise ConfigError(f"{flag}: REGION=HOST:PORT[,HOST:PORT...], not {item!r}")
            entry = regions.setdefault(name, {"name": name})
            entry.setdefault(kind, [])
            entry[kind] = [*entry[kind], *filter(None, addrs.split(","))]
    values["regions"] = list(regions.values())
    values.update({k: v for k, v in flags.items() if v is not None})
    try:
        cfg = GatewayConfig(**values)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(x) for x in first["loc"])
        raise ConfigError(f"{where}: {first['msg']}") from None
    names = [r.name for r in cfg.regions]
    if len(set(names)) != len(names):
        raise ConfigError("regions: a region is named twice")
    for r in cfg.regions:
        if not r.seeds and not r.backends:
            raise ConfigError(f"regions[{r.name}]: give seeds (discovered) or backends (fixed)")
    if cfg.region is not None and cfg.region not in names:
        raise ConfigError(f"region: {cfg.region!r} is not among the regions ({', '.join(names)})")
    if bool(cfg.tls_cert) != bool(cfg.tls_key):
        raise ConfigError("tls_cert and tls_key go together")
    cfg.home()
    cfg.pool_spec()
    return cfg
