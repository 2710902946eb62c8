"""The regional VM-state store: a replicated KV map with compare-and-swap and client sessions.

Sessions make retries exactly-once: a command carries (client, seq); the store remembers
each client's last seq and its result, so a command re-proposed after an unknown outcome
(leader crash, timeout) returns the first result instead of applying twice. Clients issue
one command at a time per session, so remembering the last one suffices.

The store says what each command touches (:meth:`KVStore.command_footprint`), so a protocol
that orders only interfering commands (EPaxos) may apply commands on different keys in
different orders on different replicas. For that to leave every replica in the same state,
the sessions are split into buckets by client id: a command with a session also writes its
bucket (a footprint key), so the commands of one bucket are applied in one order everywhere,
and eviction looks only at the bucket (least recently used within it).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgpack

from novacron_core.codec import CodecError, decode, encode, record, to_wire
from novacron_core.consensus.interface import Footprint

PUT, DELETE, CAS = "put", "delete", "cas"


@record(170)
@dataclass(frozen=True, slots=True)
class KVCommand:
    op: str  # put | delete | cas
    key: str
    value: bytes | None = None
    expected: bytes | None = None  # cas: the value required now (None = key absent)
    client: str = ""  # empty: no session (not deduplicated)
    seq: int = 0


@record(171)
@dataclass(frozen=True, slots=True)
class KVQuery:
    key: str = ""
    prefix: str | None = None  # list keys under a prefix instead of reading one key
    limit: int = 1000


@record(172)
@dataclass(frozen=True, slots=True)
class KVResult:
    ok: bool = True  # cas: swapped; others: True
    value: bytes | None = None  # get: the value; cas: the value found when not swapped
    items: list[tuple[str, bytes]] = field(default_factory=list)
    stale: bool = False  # a session seq older than the last one applied


@record(173)
@dataclass(frozen=True, slots=True)
class Session:
    seq: int
    result: bytes


@record(174)
@dataclass(frozen=True, slots=True)
class KVSnapshot:
    data: dict[str, bytes]
    sessions: dict[str, Session]
    applied: int = 0


_KV_COMMAND, _KV_RESULT = 170, 172  # the record type ids of KVCommand and KVResult
MAX_SESSIONS = 100_000
SESSION_BUCKETS = 1024
# Footprint keys of session buckets: a NUL first, so no client key (a URL path) can be one.
SESSION_KEY = "\x00session/"


def _plain(v: object, t: type) -> bool:
    return v is None or type(v) is t


def _unpacked(data: bytes, type_id: int, fields: int | None = None) -> list[Any] | None:
    """The raw msgpack list of a record of ``type_id`` (with ``fields`` items, when given),
    for the fast decoders below, which check the fields they read themselves; None sends
    the payload to the validating decoder (and its CodecError)."""
    try:
        raw = msgpack.unpackb(data, raw=False)
    except Exception:  # msgpack raises many types on garbage; decode says which
        return None
    if type(raw) is not list or not raw or raw[0] != type_id:
        return None
    if fields is not None and len(raw) != fields:
        return None
    return raw


def decode_command(data: bytes) -> KVCommand:
    """``decode(data, KVCommand)``, faster for the usual shape (every write is decoded once
    per replica to apply it)."""
    raw = _unpacked(data, _KV_COMMAND, 8)
    if (
        raw is not None
        and type(raw[2]) is str
        and type(raw[3]) is str
        and _plain(raw[4], bytes)
        and _plain(raw[5], bytes)
        and type(raw[6]) is str
        and type(raw[7]) is int
    ):
        return KVCommand(raw[2], raw[3], raw[4], raw[5], raw[6], raw[7])
    return decode(data, KVCommand)


def decode_result(data: bytes) -> KVResult:
    """``decode(data, KVResult)``, faster for results without items (every write's reply)."""
    raw = _unpacked(data, _KV_RESULT, 6)
    if (
        raw is not None
        and type(raw[2]) is bool
        and _plain(raw[3], bytes)
        and raw[4] == []
        and type(raw[5]) is bool
    ):
        return KVResult(raw[2], raw[3], [], raw[5])
    return decode(data, KVResult)


def command_key(data: bytes) -> str:
    """The key a KVCommand payload names, without validating the whole record (the region's
    publisher reads the key of every committed entry)."""
    raw = _unpacked(data, _KV_COMMAND)
    if raw is not None and len(raw) > 3 and type(raw[3]) is str:
        return str(raw[3])
    return decode(data, KVCommand).key


def session_bucket(client: str, buckets: int) -> int:
    return zlib.crc32(client.encode()) % buckets


class KVStore:
    """A :class:`~novacron_core.consensus.interface.StateMachine` and
    :class:`~novacron_core.consensus.interface.Commutative`.

    Sessions are evicted least-recently-used within their bucket once it holds
    ``max_sessions / session_buckets`` (at least one): by apply order, never by time, so
    every replica evicts the same ones. A client idle through that many other commands of
    its bucket loses exactly-once for its in-doubt command (it sees it as stale).
    ``session_buckets=1`` is one LRU over all sessions.
    """

    def __init__(self, max_sessions: int = MAX_SESSIONS, session_buckets: int = SESSION_BUCKETS):
        self.max_sessions = max_sessions
        self.buckets = max(1, session_buckets)
        self.per_bucket = max(1, -(-max_sessions // self.buckets))
        self.data: dict[str, bytes] = {}
        self.sessions: dict[str, Session] = {}
        # per bucket, its clients in recency order (the eviction order)
        self._lru: dict[int, dict[str, None]] = {}
        self.applied = 0

    def apply(self, index: int, data: bytes) -> bytes | None:
        self.applied = index
        cmd = decode_command(data)
        if cmd.client:
            s = self.sessions.get(cmd.client)
            if s is not None and cmd.seq <= s.seq:
                return s.result if cmd.seq == s.seq else encode(KVResult(False, stale=True))
        result = encode(self._execute(cmd))
        if cmd.client:
            self.sessions.pop(cmd.client, None)  # re-insert: dict order is recency order
            self.sessions[cmd.client] = Session(cmd.seq, result)
            lru = self._lru.setdefault(session_bucket(cmd.client, self.buckets), {})
            lru.pop(cmd.client, None)
            lru[cmd.client] = None
            if len(lru) > self.per_bucket:
                oldest = next(iter(lru))
                del lru[oldest]
                del self.sessions[oldest]
        return result

    def command_footprint(self, data: bytes) -> Footprint:
        """The key a command writes, and its session bucket when it has a session."""
        try:
            cmd = decode(data, KVCommand)
        except CodecError:
            return Footprint(write_all=True)
        if cmd.client:
            bucket = f"{SESSION_KEY}{session_bucket(cmd.client, self.buckets)}"
            return Footprint(writes=(cmd.key, bucket))
        return Footprint(writes=(cmd.key,))

    def query_footprint(self, query: bytes) -> Footprint:
        try:
            q = decode(query, KVQuery)
        except CodecError:
            return Footprint(read_all=True)
        if q.prefix is not None:
            return Footprint(read_all=True)
        return Footprint(reads=(q.key,))

    def _execute(self, cmd: KVCommand) -> KVResult:
        if cmd.op == PUT and cmd.value is not None:
            self.data[cmd.key] = cmd.value
            return KVResult(True)
        if cmd.op == DELETE:
            return KVResult(True, value=self.data.pop(cmd.key, None))
        if cmd.op == CAS:
            current = self.data.get(cmd.key)
            if current != cmd.expected:
                return KVResult(False, value=current)
            if cmd.value is None:
                self.data.pop(cmd.key, None)
            else:
                self.data[cmd.key] = cmd.value
            return KVResult(True)
        return KVResult(False)

    def query(self, data: bytes) -> bytes | None:
        q = decode(data, KVQuery)
        if q.prefix is not None:
            keys = sorted(k for k in self.data if k.startswith(q.prefix))[: q.limit]
            return encode(KVResult(True, items=[(k, self.data[k]) for k in keys]))
        v = self.data.get(q.key)
        return encode(KVResult(v is not None, value=v))

    def snapshot(self) -> bytes:
        return encode(KVSnapshot(dict(self.data), dict(self.sessions), self.applied))

    def capture(self) -> Callable[[], bytes]:
        """Freeze the state now (shallow copies: values are immutable bytes), encode it
        later to the same bytes as :meth:`snapshot` (``consensus/snapshot_data.py``)."""
        data, sessions, applied = dict(self.data), dict(self.sessions), self.applied
        return lambda: _encode_snapshot(data, sessions, applied)

    # The interface's KeyedState (for protocols that replicate state key by key).

    def written(self, data: bytes, result: bytes | None) -> list[str]:
        cmd = decode(data, KVCommand)
        res = decode(result, KVResult) if result else KVResult(False)
        if res.stale or (cmd.op == CAS and not res.ok):
            return []
        return [cmd.key]

    def value_of(self, key: str) -> bytes | None:
        return self.data.get(key)

    def set_value(self, key: str, value: bytes | None) -> bytes:
        if value is None:
            self.data.pop(key, None)
            return encode(KVCommand(DELETE, key))
        self.data[key] = value
        return encode(KVCommand(PUT, key, value))

    def keys(self) -> list[str]:
        return sorted(self.data)

    def restore(self, data: bytes) -> None:
        # our own snapshot (already checked by the log's CRC or the transfer): it grows with
        # the state, the 16 MiB frame limit is not its limit
        snap = decode(data, KVSnapshot, max_size=max(len(data), 1))
        self.data = dict(snap.data)
        self.sessions = dict(snap.sessions)
        self._lru = {}
        for client in self.sessions:
            self._lru.setdefault(session_bucket(client, self.buckets), {})[client] = None
        self.applied = snap.applied


def _encode_snapshot(data: dict[str, bytes], sessions: dict[str, Session], applied: int) -> bytes:
    """``encode(KVSnapshot(data, sessions, applied))``, one key at a time: each ``pack`` is
    a short C call, so a thread encoding a big state lets the event loop run between them
    (one ``packb`` of the whole map would hold the GIL throughout)."""
    head = to_wire(KVSnapshot({}, {}, applied))
    packer = msgpack.Packer(use_bin_type=True)
    parts = [packer.pack_array_header(len(head)), packer.pack(head[0]), packer.pack(head[1])]
    parts.append(packer.pack_map_header(len(data)))
    for k, v in data.items():
        parts.append(packer.pack(k))
        parts.append(packer.pack(v))
    parts.append(packer.pack(to_wire(sessions)))
    parts.extend(packer.pack(x) for x in head[4:])
    return b"".join(parts)  # (releases the GIL for the copy)
