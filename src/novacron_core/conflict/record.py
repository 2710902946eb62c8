"""The VM record a region writes (schema 2), its lifecycle, and how older records upgrade.

A record is plain JSON (what the region's group stores under ``vm/{id}`` and the publisher
ships). Besides what a VM control plane keeps (lifecycle, spec, placement, NICs with
addresses from a per-region pool, labels, tags, a description, counters) it carries its
causal version:

* ``vv``: a version vector over *regions*. A region's group linearizes its own writes, so a
  region is one writer: its ``n``-th write of a VM is the dot ``(region, n)`` and sets
  ``vv[region] = n``; the other entries say which writes of other regions it had seen.
  ``version`` is ``sum(vv)``: it grows along causality (kept for clients that compare it).
* ``writer``: the region, its HLC timestamp, the fencing epoch it wrote under, the source
  (``api``, ``resolve``, ``rollback``, ``upgrade``) and the writer's role.
* ``history``: the merge base (a snapshot of the newest consistent checkpoint this write
  descends from, see :mod:`.writes`) and the conflicts this write's lineage closed.
* ``siblings`` and ``pending``: values kept for a client (multi-value) and conflicts parked
  for a manual decision; they travel with the record until resolved.

Old records (schema 1: ``version`` an integer, ``power`` only) are read and upgraded the same
way on every replica (:func:`upgrade`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

SCHEMA = 2
Lifecycle = Literal[
    "pending", "provisioning", "running", "stopping", "stopped", "migrating", "deleted"
]
LIFECYCLE: tuple[str, ...] = (
    "pending",
    "provisioning",
    "running",
    "stopping",
    "stopped",
    "migrating",
    "deleted",
)
# The allowed transitions (one step). The API's power on/off and delete walk the shortest
# path through them (e.g. off from running is running -> stopping -> stopped, written once).
TRANSITIONS: dict[str, frozenset[str]] = {
    "pending": frozenset({"provisioning", "deleted"}),
    "provisioning": frozenset({"running", "stopped", "deleted"}),
    "running": frozenset({"stopping", "migrating", "deleted"}),
    "stopping": frozenset({"stopped"}),
    "stopped": frozenset({"provisioning", "running", "deleted"}),
    "migrating": frozenset({"running", "stopped"}),
    "deleted": frozenset(),
}
# Concurrent lifecycle operations: the state earlier in this list wins on every replica.
# Destructive and power-off intents win (delete > stop > migrate > start > provision): a VM
# that someone stopped or deleted must not come back running because another region started
# it meanwhile; a start that lost is recorded and can be repeated deliberately.
PRECEDENCE: tuple[str, ...] = (
    "deleted",
    "stopped",
    "stopping",
    "migrating",
    "running",
    "provisioning",
    "pending",
)
POWERED = frozenset({"running", "stopping", "migrating"})
# the fields a merge compares (everything else is identity, causal metadata or derived)
MERGED: tuple[str, ...] = (
    "name",
    "home_region",
    "spec",
    "lifecycle",
    "placement",
    "nics",
    "labels",
    "tags",
    "description",
    "stats",
)
WRITES_LABEL = "novacron.io/writes"  # per VM: "home" or "multi" (overrides the federation's)

Stamp = tuple[int, int, str]  # an HLC timestamp as (wall ms, logical, region)


def canon(value: Any) -> str:
    """Canonical JSON: equal values give equal strings (ordering, equality, hashing)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def same_json(a: Any, b: Any) -> bool:
    """``canon(a) == canon(b)`` without encoding: equal values of the same JSON types (1,
    1.0 and True differ). Decisions compare records and audit entries often; most are equal."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same_json(v, b[k]) for k, v in a.items())
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(map(same_json, a, b))
    return bool(a == b)


def power_of(lifecycle: str) -> str:
    return "on" if lifecycle in POWERED else "off"


def stamp(raw: Any) -> Stamp | None:
    if (
        isinstance(raw, list | tuple)
        and len(raw) == 3
        and type(raw[0]) is int
        and type(raw[1]) is int
        and isinstance(raw[2], str)
    ):
        return (raw[0], raw[1], raw[2])
    return None


def path_to(start: str, goal: str) -> list[str] | None:
    """The shortest chain of allowed transitions from ``start`` to ``goal`` (excluding
    ``start``), or None when there is none."""
    if start == goal:
        return []
    frontier: list[list[str]] = [[start]]
    seen = {start}
    while frontier:
        nxt: list[list[str]] = []
        for chain in frontier:
            for s in sorted(TRANSITIONS.get(chain[-1], ())):
                if s in seen:
                    continue
                if s == goal:
                    return [*chain[1:], s]
                seen.add(s)
                nxt.append([*chain, s])
        frontier = nxt
    return None


def mac_for(vm_id: str, nic: str) -> str:
    digest = hashlib.blake2b(f"{vm_id}/{nic}".encode(), digest_size=5).digest()
    return "02:" + ":".join(f"{b:02x}" for b in digest)


def vv_of(raw: Mapping[str, Any]) -> dict[str, int]:
    vv = raw.get("vv")
    if isinstance(vv, dict):
        return {r: c for r, c in vv.items() if isinstance(r, str) and type(c) is int and c > 0}
    return {}


def vv_leq(a: Mapping[str, int], b: Mapping[str, int]) -> bool:
    """a happened before or equals b (b has seen every write a has)."""
    return all(b.get(r, 0) >= c for r, c in a.items())


def vv_join(vvs: Iterable[Mapping[str, int]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for vv in vvs:
        for r, c in vv.items():
            if c > out.get(r, 0):
                out[r] = c
    return dict(sorted(out.items()))


def dot_str(region: str, n: int) -> str:
    return f"{region}:{n}"


def upgrade(raw: Mapping[str, Any], writer_region: str | None = None) -> dict[str, Any]:
    """A record of any schema as a schema-2 record (a copy; deterministic)."""
    if raw.get("schema") == SCHEMA:
        out = dict(raw)
        out.setdefault("kind", "vm")
        return out
    home = str(raw.get("home_region") or writer_region or "")
    region = writer_region or home
    version = raw.get("version")
    n = version if type(version) is int and version > 0 else 1
    power = raw.get("power")
    spec = raw.get("spec")
    return {
        "schema": SCHEMA,
        "kind": "vm",
        "id": str(raw.get("id", "")),
        "name": str(raw.get("name", raw.get("id", ""))),
        "home_region": home,
        "spec": dict(spec) if isinstance(spec, dict) else {},
        "lifecycle": "running" if power == "on" else "stopped",
        "power": "on" if power == "on" else "off",
        "placement": {"region": home, "zone": None, "host": None, "placed_at": None},
        "nics": [],
        "labels": {},
        "tags": [],
        "description": "",
        "stats": {"restarts": 0, "migrations": 0},
        "vv": {region: n},
        "version": n,
        "writer": {"region": region, "hlc": [0, 0, region], "epoch": 0, "source": "upgrade"},
        "history": {"base": None, "closed": []},
        "siblings": {},
        "pending": {},
    }


@dataclass
class Copy:
    """One region's latest write of a VM, as a replica holds it."""

    vm: str
    region: str  # the writer
    n: int  # its dot's counter: vv[region]
    vv: dict[str, int]
    hlc: Stamp
    epoch: int
    source: str
    role: str
    record: dict[str, Any]  # the whole schema-2 record
    fields: dict[str, Any] = field(default_factory=dict)  # the merged fields only
    counted: bool = False  # (the engine counted it as held back once)

    @property
    def dot(self) -> str:
        return dot_str(self.region, self.n)

    @property
    def base(self) -> dict[str, Any] | None:
        b = self.record.get("history", {}).get("base")
        return b if isinstance(b, dict) else None

    @property
    def closed(self) -> list[dict[str, Any]]:
        c = self.record.get("history", {}).get("closed")
        return c if isinstance(c, list) else []

    @property
    def marks(self) -> dict[str, Any]:
        m = self.record.get("marks")
        return m if isinstance(m, dict) else {}

    @property
    def pending(self) -> dict[str, Any]:
        p = self.record.get("pending")
        return p if isinstance(p, dict) else {}

    @property
    def siblings(self) -> dict[str, Any]:
        s = self.record.get("siblings")
        return s if isinstance(s, dict) else {}

    @property
    def deleted(self) -> bool:
        return self.fields.get("lifecycle") == "deleted"


def fields_of(record: Mapping[str, Any]) -> dict[str, Any]:
    return {k: record[k] for k in MERGED if k in record}


def parse_copy(raw: Any, writer_region: str) -> Copy | None:
    """A copy from the bytes a region published (None: not a VM record we can read)."""
    if isinstance(raw, bytes | str):
        try:
            raw = json.loads(raw)
        except ValueError:
            return None
    if not isinstance(raw, dict) or not isinstance(raw.get("id"), str):
        return None
    rec = upgrade(raw, writer_region)
    vv = vv_of(rec)
    w = rec.get("writer")
    writer: dict[str, Any] = w if isinstance(w, dict) else {}
    wr = writer.get("region")
    region: str = wr if isinstance(wr, str) else writer_region
    n = vv.get(region, 0)
    if n <= 0:
        return None
    hlc = stamp(writer.get("hlc")) or (0, 0, region)
    epoch = writer.get("epoch")
    return Copy(
        vm=rec["id"],
        region=region,
        n=n,
        vv=vv,
        hlc=hlc,
        epoch=epoch if type(epoch) is int else 0,
        source=str(writer.get("source", "api")),
        role=str(writer.get("role", "")),
        record=rec,
        fields=fields_of(rec),
    )


def dumps(record: Mapping[str, Any]) -> bytes:
    """The bytes a record is stored and published as (canonical, so equal records are equal
    bytes: a compare-and-swap or an LWW register never sees a spurious change)."""
    return canon(record).encode()


def public(record: Mapping[str, Any]) -> dict[str, Any]:
    """A record as the API shows it: without its lineage (``history``: the merge base and
    the closed conflicts, which ``/v1/conflicts`` shows)."""
    return {k: v for k, v in record.items() if k != "history"}
