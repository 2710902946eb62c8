"""Wire records of the sync engine (codec type ids 300-399).

Version 2 of the records that carry CRDT encodings (``Update``, ``Gossip``, ``AeStates``):
their RGA bodies may use the RGA's version-2 encoding (runs, stamped deletes, GC floor; see
``crdt/rga_wire.py``), which version-1 receivers cannot decode (they drop such an update or
state as garbage; every other type encodes as before). Version-2 receivers decode both.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from novacron_core.codec import record

Traces = dict[str, bytes]  # "origin#seq" of a carried update -> its trace carrier


def trace_key(origin: str, seq: int) -> str:
    """How :class:`Gossip` and :class:`Push` name a carried update in their ``traces``."""
    return f"{origin}#{seq}"


@record(300, version=2)
@dataclass(frozen=True, slots=True)
class Update:
    """One local mutation: the delta of ``key`` as the origin produced it.

    ``(origin, seq)`` is the update's dot; ``origin`` is a replica id that includes the
    node's restart epoch, so a node that lost unsynced writes never reuses a dot.
    """

    origin: str
    seq: int
    key: str
    delta: bytes  # encode_crdt(delta)
    wall_ms: int  # origin's HLC wall time, for propagation-lag figures
    # the origin's vector clock *of this key* just after it wrote: which updates of the key
    # it had seen (origin -> highest seq; its own entry is this update). Lets a receiver tell
    # a causally later write from a concurrent one (the conflict engine's input). Empty when
    # the engine is configured not to send it (``SyncConfig.causal_deps``).
    deps: dict[str, int] = field(default_factory=dict)


@record(301, version=2)
@dataclass(frozen=True, slots=True)
class Gossip:
    """Push-pull: the sender's version vector (its vector clock) and updates for the peer.

    ``reply`` asks the receiver to answer with whatever the sender's vector lacks. Updates
    travel packed (see :func:`pack`): origin names once per message, then per update only
    ``origin#, seq - previous seq of that origin, key, delta, deps`` (deps as flat
    ``[origin#, seq, ...]``) so that the bytes on the wire stay close to the deltas themselves.
    """

    vv: dict[str, int]
    origins: list[str]
    packed: list[int | str | bytes | list[int]]
    reply: bool
    # the sender's restart epoch: a higher one replaces everything known about the sender
    epoch: int = 0
    # the sender's causal-stability report, as lags behind ``vv`` in ``vv``'s order
    # (``vv[r] - stable[r]``); empty: no report (see ``SyncNode._collect``)
    stable: list[int] = field(default_factory=list)
    # node -> every epoch of it up to this one is retired at the sender (dead epochs whose
    # updates every replica has; see ``SyncNode._retire``); empty until some node restarted
    floors: dict[str, int] = field(default_factory=dict)
    # the trace context (``observe.tracing`` carrier) of carried updates that are traced:
    # empty unless one is (one byte on the wire)
    traces: Traces = field(default_factory=dict)

    @classmethod
    def of(
        cls,
        vv: dict[str, int],
        updates: list[Update],
        reply: bool,
        epoch: int = 0,
        stable: list[int] | None = None,
        floors: dict[str, int] | None = None,
        traces: Traces | None = None,
    ) -> Gossip:
        origins, packed = pack(updates)
        return cls(
            vv, origins, packed, reply, epoch, stable or [], dict(floors or {}), traces or {}
        )

    def updates(self) -> list[Update]:
        """The carried updates; raises ValueError if the packing is malformed."""
        return unpack(self.origins, self.packed)


Packed = list[int | str | bytes | list[int]]


def pack(updates: list[Update]) -> tuple[list[str], Packed]:
    index: dict[str, int] = {}
    last: dict[str, int] = {}
    flat: Packed = []
    for u in sorted(updates, key=lambda u: (u.origin, u.seq)):
        i = index.setdefault(u.origin, len(index))
        deps: list[int] = []
        for r, c in u.deps.items():
            deps += (index.setdefault(r, len(index)), c)
        flat += (i, u.seq - last.get(u.origin, 0), u.key, u.delta, deps)
        last[u.origin] = u.seq
    return list(index), flat


def unpack(origins: list[str], flat: Packed) -> list[Update]:
    if len(flat) % 5:
        raise ValueError("packed updates come in fives")
    n = len(origins)
    last = [0] * n
    out: list[Update] = []
    for k in range(0, len(flat), 5):
        i, step, key, delta, deps = flat[k : k + 5]
        if not (type(i) is int and type(step) is int and type(key) is str):
            raise ValueError("malformed packed update")
        if not (type(delta) is bytes and 0 <= i < n and step > 0 and type(deps) is list):
            raise ValueError("malformed packed update")
        if len(deps) % 2 or not all(type(x) is int and x >= 0 for x in deps):
            raise ValueError("malformed dependencies")
        if not all(x < n for x in deps[::2]):
            raise ValueError("dependency on an unknown origin")
        last[i] += step
        dep = {origins[deps[j]]: deps[j + 1] for j in range(0, len(deps), 2)}
        out.append(Update(origins[i], last[i], key, delta, 0, dep))
    return out


@record(302)
@dataclass(frozen=True, slots=True)
class AeRanges:
    """Anti-entropy round 1: the sender's range hashes.

    ``catchup`` (non-zero: an attempt number) marks the catch-up exchange of a restarted
    replica: the receiver first forgets the sender's older incarnation (``epoch``), then
    answers even if nothing differs, with its own vector."""

    hashes: list[int]
    epoch: int = 0
    catchup: int = 0


@record(303)
@dataclass(frozen=True, slots=True)
class AeLeaves:
    """Round 2: leaf hashes of the ranges that differ (range index -> leaf hashes).

    In a catch-up exchange: the attempt echoed, the sender's vector when it compared, and
    ``partial`` if the sender is catching up itself. ``refused`` with ``epoch``: the sender
    knows an epoch of the receiver's at least that high (the receiver's disk went back in
    time and it must take a newer epoch); also sent to an older incarnation's gossip."""

    leaves: dict[int, list[int]]
    catchup: int = 0
    vv: dict[str, int] = field(default_factory=dict)
    refused: bool = False
    epoch: int = 0
    floors: dict[str, int] = field(default_factory=dict)  # the sender's retired epochs
    partial: bool = False  # the sender is catching up itself (see ``SyncNode._catchup_done``)


@record(304, version=2)
@dataclass(frozen=True, slots=True)
class AeStates:
    """Rounds 3 and 4: full states of the keys in differing leaves."""

    leaves: list[int]
    states: dict[str, bytes]
    reply: bool
    catchup: int = 0  # the catch-up attempt this exchange belongs to (0: routine)


@record(305)
@dataclass(frozen=True, slots=True)
class Push:
    """Eager push (``SyncConfig.eager``): updates sent the moment they are made, to every
    peer of the origin's region and to one peer of each other region, which ``relay``s them
    to the rest of its own region. Packed like :class:`Gossip`; no vector: the periodic
    rounds still exchange vectors and repair whatever a push missed. ``ack``: the origin
    waits for acknowledgements (synchronous replication): each receiver answers the origin
    with a :class:`PushAck` once the updates are on its disk."""

    origins: list[str]
    packed: list[int | str | bytes | list[int]]
    epoch: int = 0
    relay: bool = False
    ack: bool = False
    traces: Traces = field(default_factory=dict)  # as in :class:`Gossip`

    @classmethod
    def of(
        cls,
        updates: list[Update],
        epoch: int,
        relay: bool,
        ack: bool = False,
        traces: Traces | None = None,
    ) -> Push:
        origins, packed = pack(updates)
        return cls(origins, packed, epoch, relay, ack, traces or {})

    def updates(self) -> list[Update]:
        """The carried updates; raises ValueError if the packing is malformed."""
        return unpack(self.origins, self.packed)


@record(306)
@dataclass(frozen=True, slots=True)
class PushAck:
    """The sender holds (journaled and fsynced) updates ``seqs`` of replica ``origin``."""

    origin: str
    seqs: list[int]
