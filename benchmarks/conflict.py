"""Conflict detection and resolution on realistic VM records, and our record merge beside
Loro (its Python binding) and Automerge (its npm package, run by Node) merging the same
concurrent edits of the same documents in the same run.

The documents: schema-2 VM records of ~30 fields, 48 leaves (spec with nested disks and
limits, 8 labels, tags, two NICs leased from the region's pool, placement, counters, a
description), created in one region and then written concurrently by two others, each with
a mix of what users do (power off / reboot, re-address, relabel, resize, move, describe).
Every write goes through the conflict engine's real write path (``prepare``), so the
copies are the bytes a region publishes.

Measured per document:

* detection: parse the incoming copy, find the heads by version vector and their common
  ancestor (what a replica does when a copy arrives);
* resolution: the whole decision (three-way merge, the policy's strategies, the audit
  entry) from the parsed copies;
* merge throughput: base + two concurrent sides to the merged record (ours: the decision;
  Loro: import both sides' updates into the base and read the merged JSON; Automerge, the
  npm package run by Node through ``peers/automerge/merge.mjs``: apply both sides' changes
  to the base and read the merged JSON). Building the documents and the edits, loading the
  base, and for Automerge Node's start-up and reading the workload, are outside the timing.

The mixed workload's policy parks resource fields (``spec.*`` after a failed vote) for a
person, so the share resolved automatically is a real share, not 100% by construction.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import result
from novacron_core.conflict.engine import ConflictEngine, copy_key
from novacron_core.conflict.policy import parse
from novacron_core.conflict.record import fields_of, parse_copy, vv_leq
from novacron_core.conflict.resolve import ancestor, heads_of, resolve
from novacron_core.conflict.writes import (
    Create,
    Patch,
    Place,
    Power,
    Prepared,
    Readdress,
    Reboot,
    SetSpec,
    WriteContext,
)

REGIONS = ("r1", "r2", "r3")
POOLS = {r: f"10.{16 + i}.0.0/16" for i, r in enumerate(REGIONS)}
POLICY = {
    "writes": "multi",
    "rules": [
        {"field": "description", "strategy": "text"},
        {"field": "spec.*", "strategies": ["vote", "manual"]},
    ],
}
SPEC = {
    "cpus": 4,
    "memory_mib": 8192,
    "image": "debian-12",
    "disks": {"root": {"size_gib": 40, "class": "ssd"}, "data": {"size_gib": 200, "class": "hdd"}},
    "limits": {"iops": 3000, "net_mbps": 1000},
}
LABELS = {f"k{i}": f"v{i}" for i in range(7)} | {"novacron.io/writes": "multi"}


def _leaves(v: Any) -> int:
    if isinstance(v, dict):
        return sum(_leaves(x) for x in v.values())
    if isinstance(v, list):
        return sum(_leaves(x) for x in v) or 1
    return 1


class _Region:
    def __init__(self, name: str, policies: Any) -> None:
        self.name = name
        self.engine = ConflictEngine(name, None, policies, POOLS)
        self.kv: dict[str, bytes] = {}
        self.clock = 1_000

    def write(self, vm: str, change: Any) -> bytes | None:
        self.clock += 1
        ctx = WriteContext(self.name, (self.clock, 0, self.name))
        out = self.engine.prepare(vm, change, self.kv.get(vm), ctx, self.clock / 1000)
        if not isinstance(out, Prepared):
            return None
        self.kv[vm] = out.value
        self.receive(vm, self.name, out.value)
        return out.value

    def receive(self, vm: str, region: str, raw: bytes) -> None:
        self.engine.on_copy(copy_key(vm, region), raw)
        self.engine.settle(self.clock)


def _edits(rng: random.Random) -> list[Any]:
    pool: list[Any] = [
        Power("off"),
        Reboot(),
        Readdress(),
        Patch(labels={f"k{rng.randrange(7)}": rng.choice("abc")}),
        Patch(add_tags=(rng.choice(["blue", "green", "canary"]),)),
        Patch(description=rng.choice(["web tier", "the web server", "web (canary)"])),
        SetSpec({"cpus": rng.choice([2, 8])}),
        Place(rng.choice(["h1", "h2", "h3"])),
    ]
    return rng.sample(pool, rng.randint(1, 3))


def documents(count: int, seed: int = 7) -> list[tuple[bytes, bytes, bytes]]:
    """(base, side A, side B) copies of ``count`` VMs: A and B concurrent on top of base."""
    rng = random.Random(seed)
    policies = parse(POLICY)
    out = []
    for i in range(count):
        if i % 50 == 0:  # fresh regions: a region's engine re-checks its addresses per write
            r1, r2, r3 = (_Region(r, policies) for r in REGIONS)
        vm = f"vm-{i}"
        create = Create(vm, vm, SPEC, "on", LABELS, ("prod", "web"), "web", nics=("eth0", "eth1"))
        base = r1.write(vm, create)
        assert base is not None
        sides = []
        for r in (r2, r3):
            r.receive(vm, "r1", base)
            raw = None
            for change in _edits(rng):
                raw = r.write(vm, change) or raw
            sides.append(raw or r.write(vm, Patch(labels={"k0": r.name})))
        a, b = sides
        assert a is not None
        assert b is not None
        out.append((base, a, b))
    return out


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def ours(docs: list[tuple[bytes, bytes, bytes]]) -> dict[str, Any]:
    policies = parse(POLICY)
    detect, decide = [], []
    auto = parked = 0
    for i, (base, a, b) in enumerate(docs):
        vm = f"vm-{i}"
        t0 = time.perf_counter_ns()
        copies = [parse_copy(base, "r1"), parse_copy(a, "r2"), parse_copy(b, "r3")]
        live = [c for c in copies if c is not None]
        heads = heads_of(live)
        concurrent = len(heads) > 1 and not vv_leq(heads[0].vv, heads[1].vv)
        ancestor(heads)
        t1 = time.perf_counter_ns()
        r = resolve(vm, live, policies)
        t2 = time.perf_counter_ns()
        assert concurrent
        assert r is not None
        assert r.entry is not None
        detect.append((t1 - t0) / 1e6)
        decide.append((t2 - t1) / 1e6)
        if any(f["outcome"] == "parked" for f in r.entry["fields"]):
            parked += 1
        else:
            auto += 1
    # throughput: parsed copies in, merged record out (parsing is the detection above)
    parsed = [
        [c for c in (parse_copy(x, r) for x, r in zip(d, REGIONS, strict=True)) if c is not None]
        for d in docs
    ]
    start = time.perf_counter()
    for i, live in enumerate(parsed):
        resolve(f"vm-{i}", live, policies)
    took = time.perf_counter() - start
    return {
        "detect_p50_ms": _pct(detect, 0.5),
        "detect_p99_ms": _pct(detect, 0.99),
        "resolve_p50_ms": _pct(decide, 0.5),
        "resolve_p99_ms": _pct(decide, 0.99),
        "auto_share": auto / (auto + parked),
        "merges_per_s": len(parsed) / took,
    }


# ------------------------------------------------------------------ Loro


def _loro_fill(target: Any, value: dict[str, Any], loro: Any) -> dict[str, Any]:
    """Nested maps as Loro maps (field-level merge), lists and scalars as values; the
    container id of every map by its path."""
    ids: dict[str, Any] = {"": target.id}
    for k, v in value.items():
        if isinstance(v, dict):
            child = target.insert_container(k, loro.LoroMap())
            ids |= {f"{k}/{p}".rstrip("/"): i for p, i in _loro_fill(child, v, loro).items()}
        else:
            target.insert(k, v)
    return ids


def _loro_apply(doc: Any, ids: dict[str, Any], old: Any, new: Any, path: str, loro: Any) -> None:
    """The edit from ``old`` to ``new`` as Loro operations on the maps (what a client
    of Loro would do for the same write)."""
    m = doc.get_map(ids[path])
    for k in sorted(set(old) | set(new)):
        sub = f"{path}/{k}".lstrip("/")
        if k not in new:
            m.delete(k)
        elif isinstance(new[k], dict) and isinstance(old.get(k), dict) and sub in ids:
            _loro_apply(doc, ids, old[k], new[k], sub, loro)
        elif old.get(k) != new[k]:
            if isinstance(new[k], dict):
                _loro_fill(m.insert_container(k, loro.LoroMap()), new[k], loro)
            else:
                m.insert(k, new[k])


def loro_merge(docs: list[tuple[bytes, bytes, bytes]]) -> dict[str, Any]:
    import loro

    prepared = []
    for base, a, b in docs:
        copies = [parse_copy(x, r) for x, r in zip((base, a, b), REGIONS, strict=True)]
        fb, fa, fbb = (fields_of(c.record) for c in copies if c is not None)
        doc = loro.LoroDoc()
        ids = _loro_fill(doc.get_map("vm"), fb, loro)
        doc.commit()
        vv = doc.oplog_vv
        updates = []
        for side in (fa, fbb):
            fork = doc.fork()
            _loro_apply(fork, ids, fb, side, "", loro)
            fork.commit()
            updates.append(fork.export(loro.ExportMode.Updates(vv)))
        prepared.append((doc.export(loro.ExportMode.Snapshot()), updates))
    bases = []
    for snap, _ in prepared:  # the base loaded before timing, like our parsed copies
        d = loro.LoroDoc()
        d.import_(snap)
        bases.append(d)
    start = time.perf_counter()
    for d, (_, updates) in zip(bases, prepared, strict=True):
        d.import_batch(updates)
        d.get_deep_value()
    took = time.perf_counter() - start
    return {"merges_per_s": len(prepared) / took, "version": loro.LORO_VERSION}


AUTOMERGE = Path(__file__).resolve().parent / "peers" / "automerge"
AUTOMERGE_BUILD = "bash benchmarks/peers/automerge/build.sh"


def automerge_dir() -> Path:
    """Where build.sh installs the pinned @automerge/automerge (its rule, kept in step)."""
    package = json.loads((AUTOMERGE / "package.json").read_text())
    version = str(package["dependencies"]["@automerge/automerge"])
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    cache = os.environ.get("NOVACRON_CACHE") or f"{xdg}/novacron"
    return Path(cache) / "automerge" / version


def automerge_merge(docs: list[tuple[bytes, bytes, bytes]]) -> dict[str, Any]:
    """The real Automerge (npm ``@automerge/automerge``, run by Node) merging the same
    concurrent edits: ``merge.mjs`` gets each document's base and sides as fields (the
    records Loro gets), builds and forks the documents untimed, and times applying both
    sides' changes to the loaded base and reading the merged JSON. PyPI has no usable
    Automerge binding (``automerge`` 0.1.2 cannot edit, fork or save), hence Node."""
    node = shutil.which("node")
    where = automerge_dir()
    if node is None:
        return {"error": f"skipped: no node on PATH (install Node.js 20, then {AUTOMERGE_BUILD})"}
    if not (where / "node_modules" / "@automerge" / "automerge" / "package.json").is_file():
        return {"error": f"skipped: Automerge not installed in {where} (run {AUTOMERGE_BUILD})"}
    workload = {"documents": [[fields_of(c.record) for c in _parsed(d)] for d in docs]}
    with tempfile.TemporaryDirectory(prefix="novacron-automerge-") as tmp:
        path = Path(tmp) / "workload.json"
        path.write_text(json.dumps(workload))
        try:
            p = subprocess.run(
                [node, str(AUTOMERGE / "merge.mjs"), str(where), str(path)],
                capture_output=True,
                text=True,
                timeout=600,
            )
        except subprocess.TimeoutExpired:
            return {"error": "automerge peer took over 600 s"}
    try:
        out: dict[str, Any] = json.loads(p.stdout)
    except json.JSONDecodeError:
        return {"error": f"automerge peer failed (exit {p.returncode}): {p.stderr.strip()[-400:]}"}
    if p.returncode != 0:  # it printed its figures, but a merged document broke the contract
        wrong = f"{out['violation_count']} fields wrongly: {out['violations']}"
        return {"error": f"automerge merged {wrong}"}
    return out


def _parsed(doc: tuple[bytes, bytes, bytes]) -> list[Any]:
    copies = [parse_copy(x, r) for x, r in zip(doc, REGIONS, strict=True)]
    assert all(c is not None for c in copies)
    return copies


def _load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} cores"


def run(quick: bool = False) -> dict[str, Any]:
    count = 300 if quick else 2_000
    load_before = _load()
    docs = documents(count)
    record = parse_copy(docs[0][1], "r2")
    assert record is not None
    ours_f = ours(docs)
    try:
        peer_loro = loro_merge(docs)
    except ImportError as e:
        peer_loro = {"error": f"loro not installed: {e}"}
    peer_am = automerge_merge(docs)
    figures = {
        **ours_f,
        "detect_target_p99_ms": 1.0,
        "resolve_target_p99_ms": 10.0,
        "record_leaf_fields": _leaves(fields_of(record.record)),
        "documents": count,
        "load_before": load_before,
        "load_after": _load(),
    }
    peers = {
        "loro_merges_per_s": peer_loro.get("merges_per_s", peer_loro.get("error")),
        "loro_version": peer_loro.get("version"),
        "automerge_merges_per_s": peer_am.get("merges_per_s", peer_am.get("error")),
        "automerge_version": peer_am.get("version"),
        "automerge_node": peer_am.get("node"),
        "automerge_merges_checked": peer_am.get("checked"),
    }
    ratios: dict[str, Any] = {}
    if "merges_per_s" in peer_loro:
        ratios["merge_vs_loro"] = ours_f["merges_per_s"] / peer_loro["merges_per_s"]
    ratios["merge_vs_automerge"] = (
        ours_f["merges_per_s"] / peer_am["merges_per_s"] if "merges_per_s" in peer_am else "n/a"
    )
    params = {"quick": quick, "policy": POLICY, "median_edits_per_side": 2}
    return result("conflict", figures, peers, ratios, params)
