"""EPaxos's records (type_ids 380-399): commands, the durable instance, and the peer messages.

An *instance* ``(owner, num)`` is a slot in the instance space of replica ``owner``; only
``owner`` proposes into it at the initial ballot 0, any replica may take it over at a higher
ballot to recover it (Explicit Prepare). Its attributes are ``seq`` and ``deps``: ``deps``
maps a replica to the highest of its instance numbers this command depends on, and means
"every instance of that replica up to that number whose command interferes with this one"
(efficient/epaxos's vector form, here restricted to interfering commands). A no-op therefore
needs no dependencies of its own: nothing interferes with it.

Ballots are integers: ``round << 8 | rank``, rank being the replica's position among the
sorted voters, so every replica draws from its own ballots; 0 is the owner's initial ballot.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from novacron_core.codec import record
from novacron_core.consensus.interface import Footprint

# What a command is. A READ is a query ordered like a write (reads are commands here: a read
# executes after every write it interferes with that committed before it was proposed).
WRITE, READ, NOOP = 0, 1, 2
# Where an instance is at one replica (EXECUTED is tracked in memory, derived from these).
NONE, PREACCEPTED, ACCEPTED, COMMITTED = 0, 1, 2, 3
STATUS_NAMES = {
    NONE: "none",
    PREACCEPTED: "pre-accepted",
    ACCEPTED: "accepted",
    COMMITTED: "committed",
}

Deps = dict[str, int]


@record(380)
@dataclass(frozen=True, slots=True)
class Command:
    """A state-machine command or query with its footprint (computed once, by the replica
    that proposes it, so every replica judges interference the same way)."""

    kind: int
    data: bytes = b""
    writes: tuple[str, ...] = ()
    reads: tuple[str, ...] = ()
    read_all: bool = False
    write_all: bool = False

    @classmethod
    def of(cls, kind: int, data: bytes, fp: Footprint) -> Command:
        return cls(kind, data, fp.writes, fp.reads, fp.read_all, fp.write_all)

    @property
    def noop(self) -> bool:
        return self.kind == NOOP

    def writes_any(self) -> bool:
        return bool(self.writes) or self.write_all


NOOP_COMMAND = Command(NOOP)


def interferes(a: Command, b: Command) -> bool:
    """Do ``a`` and ``b`` not commute? (One writes what the other reads or writes.)"""
    if a.kind == NOOP or b.kind == NOOP:
        return False
    if a.write_all or b.write_all:
        return True
    if a.read_all and b.writes:
        return True
    if b.read_all and a.writes:
        return True
    if a.writes:
        bw = b.writes
        for k in a.writes:
            if k in bw or k in b.reads:
                return True
    if b.writes:
        for k in a.reads:
            if k in b.writes:
                return True
    return False


@record(381)
@dataclass(frozen=True, slots=True)
class InstanceState:
    """One instance as a replica holds it, and the durable write that records it.

    ``bal``: the highest ballot this replica promised for the instance. ``vbal``: the ballot
    at which it took its current status and attributes. Keeping the two apart is the
    correction of Sutra (2019): with one variable, a promise overwrites the ballot of the
    accepted attributes and recovery cannot tell which accepted value is the newest.
    ``eq``: pre-accepted at ballot 0 with exactly the owner's attributes (a fast-path vote).
    """

    owner: str
    num: int
    status: int = NONE
    cmd: Command | None = None
    seq: int = 0
    deps: Deps = field(default_factory=dict)
    bal: int = 0
    vbal: int = 0
    eq: bool = False


# ------------------------------------------------------------------ peer messages


@record(382)
@dataclass(frozen=True, slots=True)
class PreAccept:
    owner: str
    num: int
    ballot: int
    cmd: Command
    seq: int
    deps: Deps


@record(383)
@dataclass(frozen=True, slots=True)
class PreAcceptOK:
    owner: str
    num: int
    ballot: int
    seq: int
    deps: Deps
    eq: bool  # the sender added nothing to the attributes it was sent


@record(384)
@dataclass(frozen=True, slots=True)
class Accept:
    owner: str
    num: int
    ballot: int
    cmd: Command
    seq: int
    deps: Deps


@record(385)
@dataclass(frozen=True, slots=True)
class AcceptOK:
    owner: str
    num: int
    ballot: int


@record(386)
@dataclass(frozen=True, slots=True)
class Commit:
    owner: str
    num: int
    cmd: Command
    seq: int
    deps: Deps


@record(387)
@dataclass(frozen=True, slots=True)
class Prepare:
    """Explicit Prepare: promise ``ballot`` for the instance and say what you hold of it."""

    owner: str
    num: int
    ballot: int


@record(388)
@dataclass(frozen=True, slots=True)
class PrepareOK:
    """``vbal``: the ballot of the reported status and attributes (see InstanceState)."""

    owner: str
    num: int
    ballot: int
    status: int
    cmd: Command | None
    seq: int
    deps: Deps
    vbal: int
    eq: bool


@record(389)
@dataclass(frozen=True, slots=True)
class Nack:
    """The sender promised ``promised`` > ``ballot`` for the instance."""

    owner: str
    num: int
    ballot: int
    promised: int


@record(390)
@dataclass(frozen=True, slots=True)
class Fetch:
    """Send me the commits of these instances, if you hold them committed (a lagging
    replica's catch-up, before it resorts to recovering them)."""

    items: list[tuple[str, int]]


@record(391)
@dataclass(frozen=True, slots=True)
class Beacon:
    """Every heartbeat: ``executed`` (per owner, every instance up to it is executed here:
    an instance executed by every replica may be compacted away) and ``seen`` (per owner,
    the highest instance number known here: a replica that knows less has a gap to fill)."""

    executed: dict[str, int]
    seen: dict[str, int]


PEER_MESSAGES: tuple[type, ...] = (
    PreAccept,
    PreAcceptOK,
    Accept,
    AcceptOK,
    Commit,
    Prepare,
    PrepareOK,
    Nack,
    Fetch,
    Beacon,
)
