"""What the gateway knows about the federation, behind one small interface.

The nodes' client API is the contract the gateway builds on (the federation's endpoints
are on the same port: ``/v1/federation/...``, docs/region.md); everything that depends on
the federation lives here, so adapting the gateway is a change to this file:

- where a VM lives: a VM record's ``home_region`` (every ``/v1/vms`` answer carries it),
  or an ``X-Novacron-Home-Region`` header a node may send instead;
- how to look up a VM the gateway has not seen (``lookup_path``);
- whether an answer came from another region's replica rather than the home group
  (``X-Novacron-Source: federation-replica``: eventually consistent, and says so);
- the federation topology file (``{fed}-topology`` ConfigMap, ``topology.json``).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

HOME_HEADER = b"x-novacron-home-region"
SOURCE_HEADER = b"x-novacron-source"


@dataclass(frozen=True, slots=True)
class RegionSeed:
    """A region as configuration names it: where to discover its members (``seeds``,
    node client-API addresses asked for ``/v1/cluster``) or its fixed ``backends``."""

    name: str
    seeds: tuple[str, ...] = ()
    backends: tuple[str, ...] = ()
    location: tuple[float, float] | None = None
    weight: int = 1
    priority: int = 0
    zone: str = ""


@dataclass
class FederationAdapter:
    api_port: int = 8080
    extra: dict[str, Any] = field(default_factory=dict)

    def home_from_answer(self, headers: list[tuple[bytes, bytes]], doc: Any) -> str | None:
        for k, v in headers:
            if k.lower() == HOME_HEADER:
                return v.decode("latin-1").strip() or None
        if isinstance(doc, dict):
            home = doc.get("home_region")
            if isinstance(home, str) and home:
                return home
        return None

    def lookup_path(self, vm_id: str) -> str:
        return f"/v1/vms/{quote(vm_id, safe='')}"

    def is_replica_answer(self, headers: list[tuple[bytes, bytes]]) -> bool:
        return any(k.lower() == SOURCE_HEADER and b"replica" in v for k, v in headers)

    def regions_from_topology(self, doc: dict[str, Any]) -> list[RegionSeed]:
        """``{"members": [{"name", "region"?, "local", "endpoints": ["host:port"]}]}``.
        Endpoints name the nodes' peer port; the client API listens on ``api_port`` of
        the same hosts. A member without ``region`` is a region named after itself."""
        members = doc.get("members")
        if not isinstance(members, list):
            raise ValueError("topology: 'members' must be a list")
        out: dict[str, list[str]] = {}
        for i, m in enumerate(members):
            if not isinstance(m, dict) or not isinstance(m.get("name"), str):
                raise ValueError(f"topology: members[{i}] needs a 'name'")
            region = m.get("region") or m["name"]
            if not isinstance(region, str):
                raise ValueError(f"topology: members[{i}].region must be a string")
            eps = m.get("endpoints") or []
            if not isinstance(eps, list) or not all(isinstance(e, str) for e in eps):
                raise ValueError(f"topology: members[{i}].endpoints must be host:port strings")
            seeds = out.setdefault(region, [])
            for ep in eps:
                host, sep, _ = ep.rpartition(":")
                seeds.append(f"{host if sep else ep}:{self.api_port}")
        return [RegionSeed(r, tuple(dict.fromkeys(s))) for r, s in out.items()]


class HomeRegions:
    """VM id -> home region, learned from answers; bounded (least recently used go)."""

    def __init__(self, capacity: int = 100_000) -> None:
        self.capacity = capacity
        self._homes: OrderedDict[str, str] = OrderedDict()

    def get(self, vm_id: str) -> str | None:
        home = self._homes.get(vm_id)
        if home is not None:
            self._homes.move_to_end(vm_id)
        return home

    def learn(self, vm_id: str, region: str) -> None:
        self._homes[vm_id] = region
        self._homes.move_to_end(vm_id)
        if len(self._homes) > self.capacity:
            self._homes.popitem(last=False)

    def forget(self, vm_id: str) -> None:
        self._homes.pop(vm_id, None)

    def __len__(self) -> int:
        return len(self._homes)
