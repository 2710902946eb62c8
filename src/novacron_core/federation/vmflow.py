"""Which committed VM records a region's leader must publish as CRDT deltas (sans-IO).

A region's group holds its own copy of each VM it wrote under ``vm/{id}``; the federation
store holds every region's copy under ``vm/{id}@{region}``, an LWW register holding the
record's JSON (``None`` once the group no longer holds it). Only that region's leader
publishes it, and only what its group committed, so every other region sees a prefix of the
writer region's history. The conflict engine (``conflict/engine.py``) merges the regions'
copies of one VM into the record every replica shows.

The register's timestamp is :func:`stamp`: the home group's log index at which the
publisher read the value (then the region's name), not a wall clock. Log indices only grow
across leaders, so a record published by a new leader always wins over one an old leader
published earlier, however the two machines' clocks disagree, and however late the old
one's message arrives: a replica never sees a VM's record go back to an older version.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from novacron_core.clocks import HLC, HLCTimestamp
from novacron_core.sync.crdt import LWWRegister
from novacron_core.sync.engine import Mutate, SyncConfig
from novacron_core.sync.store import Store
from novacron_core.vm import CorruptRecordError, check_record

PREFIX = "vm/"
# What a node's federation replica runs with unless the federation file says otherwise:
# gossip every 100 ms to 3 peers, one of them in another region; anti-entropy every second.
FEDERATION_SYNC = SyncConfig(interval=0.1, fanout=3, cross_region=1, ae_interval=1.0)


@dataclass(frozen=True)
class Publish:
    key: str  # the federation key (``vm/{id}@{region}``)
    value: bytes | None  # None: the region's group no longer holds the VM


def fed_key(kv_key: str, region: str) -> str:
    """The federation key of a region's copy of the VM its group holds at ``kv_key``."""
    return f"{kv_key}@{region}"


def kv_key(key: str) -> str:
    """The group key a federation copy key names (the key itself if it names none)."""
    base, sep, _ = key.rpartition("@")
    return base if sep and base.startswith(PREFIX) else key


def writer_of(key: str) -> str | None:
    base, sep, region = key.rpartition("@")
    return region if sep and base.startswith(PREFIX) else None


def is_record(key: str, raw: Any) -> bool:
    """Whether ``raw`` is the VM record of ``key`` (``vm/{id}``, or a region's copy of it,
    ``vm/{id}@{region}``). Anything else found there is never published."""
    if not isinstance(raw, bytes):
        return False
    try:
        check_record(kv_key(key)[len(PREFIX) :], raw)
    except CorruptRecordError:
        return False
    return True


def home_region_of(raw: Any) -> str | None:
    if not isinstance(raw, bytes):
        return None
    try:
        rec = json.loads(raw)
    except ValueError:
        return None
    region = rec.get("home_region") if isinstance(rec, dict) else None
    return region if isinstance(region, str) else None


def changes(
    committed: Mapping[str, bytes],
    store: Store,
    region: str,
    keys: Iterable[str] | None = None,
) -> list[Publish]:
    """What differs between the group's committed VM records and this region's copies in
    the federation store: new or changed records, and copies the group no longer holds. A
    value that is not a VM record is never published (a copy published before it is
    withdrawn; a bare-key one an older node published is removed). ``keys`` (group keys)
    limits the comparison to those (the ones just applied); None compares everything, as a
    new leader must (it does not know what its predecessor published)."""
    full = keys is None
    if keys is None:
        own = [kv_key(k) for k in store.keys() if writer_of(k) == region]  # noqa: SIM118
        keys = [*committed, *(k for k in own if k not in committed)]
    out: list[Publish] = []
    for key in keys:
        if not key.startswith(PREFIX):
            continue
        fk = fed_key(key, region)
        raw = committed.get(key)
        current = store.value(fk)
        if raw is not None:
            if is_record(key, raw):
                if current != raw:
                    out.append(Publish(fk, raw))
            elif current is not None:
                out.append(Publish(fk, None))
        elif current is not None:
            out.append(Publish(fk, None))
    if full:
        # a value an older node published under the bare key that is not a VM record: any
        # region's leader removes it from the federation (the readers skip it meanwhile)
        for key in store.keys():  # noqa: SIM118
            value = store.value(key)
            bare = key.startswith(PREFIX) and writer_of(key) is None
            if bare and value is not None and not is_record(key, value):
                out.append(Publish(key, None))
    return out


def stamp(index: int, region: str) -> HLCTimestamp:
    """The LWW timestamp of a record its home group held at log ``index``."""
    return HLCTimestamp(index, 0, region)


def as_mutation(change: Publish, ts: HLCTimestamp) -> Mutate:
    return Mutate(change.key, LWWRegister, lambda reg: reg.assign(change.value, ts))


def records(store: Store) -> list[dict[str, Any]]:
    """Every region's copy of every VM the federation store holds, sorted by key (the
    merged records are the conflict engine's); values there that are not VM records are
    skipped."""
    out = []
    for key in sorted(store.keys()):
        raw = store.value(key) if key.startswith(PREFIX) else None
        if isinstance(raw, bytes) and is_record(key, raw):
            out.append(json.loads(raw))
    return out


HEARTBEAT_PREFIX = "hb/"


def heartbeat(region: str, hlc: HLC, now_ms: int) -> Mutate:
    """The home leader's periodic mark ``hb/{region} = now_ms``, published after that
    cycle's record changes: a replica holding mark ``t`` has (gossip keeps buffer order, so
    nearly always) what that region committed before ``t``."""
    ts = hlc.now(now_ms)
    return Mutate(HEARTBEAT_PREFIX + region, LWWRegister, lambda reg: reg.assign(now_ms, ts))


def region_lags(store: Store, now_ms: int, own_region: str) -> dict[str, float]:
    """Seconds since the newest heartbeat of each other region this replica holds: how far
    behind that region it is at most (plus one heartbeat period). Same-host clocks only."""
    out: dict[str, float] = {}
    for key in store.keys():  # noqa: SIM118 - iterating a Store yields (key, value)
        if key.startswith(HEARTBEAT_PREFIX):
            region, mark = key[len(HEARTBEAT_PREFIX) :], store.value(key)
            if region != own_region and isinstance(mark, int):
                out[region] = max(0.0, (now_ms - mark) / 1000.0)
    return out
