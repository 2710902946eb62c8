"""What every consensus protocol offers the node, whichever protocol it is.

A region's consensus group is made of *members*, each a sans-IO
:class:`~novacron_core.machine.Machine` (Raft today; Multi-Paxos and EPaxos are to come, each in
its own package beside ``raft/``). The node, the composite region machine, the HTTP API and
the operator speak only this vocabulary:

* **requests** a member accepts through ``on_request``: :class:`Propose` (a state-machine
  command), :class:`Read` (a linearizable query), :class:`ChangeMember`,
  :class:`TransferLeader`; each is answered with one :class:`Reply` whose ``status`` says
  whether the operation certainly happened (``ok``), certainly did not (``not_leader``,
  ``busy``, ``rejected``) or may have (``unknown``: retry with the same client session);
* **what a member tells its owner** in every :class:`~novacron_core.machine.Ready`:
  ``committed`` (entries committed *and applied* to the member's state machine since the
  last Ready, in log order, as :class:`Committed` items, or :class:`Restored` when a snapshot
  replaced the whole state) and ``soft_state`` (a :class:`SoftState` whenever role, leader,
  term or membership changed) — etcd-io/raft's ``CommittedEntries`` and ``SoftState``;
* **its status document** (:class:`GroupStatus`): what ``GET /v1/cluster`` serves and the
  operator's admin client parses.

Who applies: the member applies each committed command to the :class:`StateMachine` its
owner gave it, in log order, before the Ready that lists the entry is returned (so a reply
carries the command's result and a read sees every write acknowledged before it). The
owner (the composite region machine) reads ``Ready.committed`` to act on what was applied
(publishing it to other regions); it never applies an entry itself, and never reads the
member's internal fields.

Codec type ids: these records keep the ids they had in ``raft/messages.py`` (101, 103,
150-153, 160), so logs, snapshots and peers written before the move decode unchanged.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict

from novacron_core.codec import record
from novacron_core.machine import Durable, NodeId, Ready

# ------------------------------------------------------------------ membership


@record(103)
@dataclass(frozen=True, slots=True)
class MemberAddress:
    """Where a member listens: ``host:port`` strings, opaque to the protocol (the runtime
    dials them)."""

    node: str
    peer: str
    http: str


@record(101)
@dataclass(frozen=True, slots=True)
class ConfigState:
    """The group's membership. Voters decide; learners only receive the log (new members
    catch up as learners).

    ``addresses`` (sorted by node, members only) travel with the membership, in the config
    entry and in every snapshot, so each member — also one restored from a snapshot — learns
    where the others listen without a restart or a static list.
    """

    voters: tuple[str, ...] = ()
    learners: tuple[str, ...] = ()
    addresses: tuple[MemberAddress, ...] = ()

    def members(self) -> tuple[str, ...]:
        return self.voters + self.learners

    def address(self, node: str) -> MemberAddress | None:
        for a in self.addresses:
            if a.node == node:
                return a
        return None


# ------------------------------------------------------------------ requests and replies


@record(150)
@dataclass(frozen=True, slots=True)
class Propose:
    """A command for the group's state machine (encoded by whoever owns it)."""

    data: bytes


@record(151)
@dataclass(frozen=True, slots=True)
class Read:
    """A linearizable query of the state machine."""

    query: bytes


@record(152)
@dataclass(frozen=True, slots=True)
class ChangeMember:
    """``action``: "add_learner", "promote" (learner -> voter), "add_voter" or "remove".

    ``peer``/``http``: the node's addresses (``host:port``), recorded in the configuration by
    add_learner/add_voter (replacing a known one); empty keeps what the config already has.
    Ignored by promote and remove (remove forgets the node's address)."""

    action: str
    node: str
    peer: str = ""
    http: str = ""


@record(153)
@dataclass(frozen=True, slots=True)
class TransferLeader:
    target: str


OK, NOT_LEADER, UNKNOWN, BUSY, REJECTED = "ok", "not_leader", "unknown", "busy", "rejected"


@record(160)
@dataclass(frozen=True, slots=True)
class Reply:
    """``status``: ok | not_leader (certainly not applied; retry at ``leader``) | unknown
    (may or may not apply: retry with the same session seq) | busy (certainly not applied;
    retry later) | rejected (certainly not applied; ``detail`` says why)."""

    status: str
    value: bytes | None = None
    leader: str | None = None
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.status == OK


# ------------------------------------------------------------------ what a member reports

# Kinds of committed entries. A barrier is a new leader's own empty entry: once it is
# committed, the leader's applied state holds everything any earlier leader committed. A
# noop fills a log position nothing else was chosen for (a Paxos hole): it means nothing.
COMMAND, CONFIG, BARRIER, NOOP = 0, 1, 2, 3


class Committed(Protocol):
    """One committed (and applied) entry as ``Ready.committed`` lists it."""

    @property
    def index(self) -> int: ...

    @property
    def term(self) -> int: ...

    @property
    def kind(self) -> int: ...

    @property
    def data(self) -> bytes: ...


@dataclass(frozen=True, slots=True)
class Restored:
    """In ``Ready.committed``: a snapshot replaced the whole state up to ``index`` (the
    entries it covers are never listed), so an owner re-reads the state it mirrors."""

    index: int


LEADER, FOLLOWER, CANDIDATE, PRE_CANDIDATE = "leader", "follower", "candidate", "pre-candidate"
# Roles of a member of a leaderless group (EPaxos): every member leads its own commands, so
# there is no leader to find; "isolated" while it hears from no quorum (it cannot commit).
REPLICA, ISOLATED = "replica", "isolated"


@dataclass(frozen=True, slots=True)
class SoftState:
    """Volatile facts a member's owner reacts to; in ``Ready.soft_state`` whenever one of
    them changed. ``term``: Raft's term, a ballot number for Paxos-family protocols.
    ``config``: the latest membership (it takes effect when appended, so a member dials a
    peer it just added)."""

    role: str
    leader: NodeId | None
    term: int
    config: ConfigState = field(default_factory=ConfigState)


class PeerAddresses(BaseModel):
    model_config = ConfigDict(extra="ignore")

    peer: str
    http: str


class RecoveredSummary(BaseModel):
    """What a member read back from its data dir at start, before any catch-up: the last
    log index and term it holds (entries or snapshot), its snapshot index, the term it had
    voted in, and how many entries it read. A check that a restarted node kept its log reads
    this, not where the log is now (a node caught up from scratch would pass that)."""

    model_config = ConfigDict(extra="ignore")

    last_index: int = 0
    last_term: int = 0
    snapshot_index: int = 0
    term: int = 0
    entries: int = 0


class FollowerStatus(BaseModel):
    """A leader's view of one other member: the highest log index known to be held there,
    and whether entries stream to it (false: probing, or sending it a snapshot)."""

    model_config = ConfigDict(extra="ignore")

    match: int = 0
    streaming: bool = False


class GroupStatus(BaseModel):
    """The status document of one member: ``GET /v1/cluster``, parsed by the operator's
    admin client (``operator/novacron_operator/admin.py``) with this same model.

    Unknown keys are ignored and new keys have defaults, so a newer node and an older
    operator (or the reverse) still understand each other."""

    model_config = ConfigDict(extra="ignore")

    id: str
    protocol: str = "raft"
    role: str
    term: int  # Raft's term; a ballot number for Paxos-family protocols
    leader: str | None = None
    commit: int
    applied: int = 0
    lag: int = 0  # committed entries this member knows of and has yet to apply
    last_index: int = 0
    snapshot_index: int = 0
    voters: list[str] = []
    learners: list[str] = []
    elections: int = 0  # elections this member started (EPaxos: instances it took over)
    rejoining: bool = False  # lost its state; waits to be removed and re-added as a learner
    peers: dict[str, PeerAddresses] = {}
    recovered: RecoveredSummary | None = None
    # the leader's view of every other member (empty on a non-leader)
    followers: dict[str, FollowerStatus] = {}
    # what a reply's success promises: "linearizable" (agreed in order) or "eventual"
    # (applied at the replica that answered, converging later)
    consistency: str = "linearizable"
    quorum: str = ""  # the quorum system deciding, as the protocol describes it
    # A leaderless protocol (EPaxos): ``leader`` is always None and any member takes writes.
    leaderless: bool = False

    @property
    def member(self) -> bool:
        return self.id in self.voters or self.id in self.learners

    @property
    def can_commit(self) -> bool:
        """Whether writes sent to this member can commit now, as far as it knows: a leader is
        known, or (leaderless) the member hears from a quorum."""
        return self.role == REPLICA if self.leaderless else self.leader is not None


# ------------------------------------------------------------------ members and protocols


class StateMachine(Protocol):
    """What a group replicates. Deterministic: same commands, same state."""

    def apply(self, index: int, data: bytes) -> bytes | None: ...

    def query(self, data: bytes) -> bytes | None: ...

    def snapshot(self) -> bytes: ...

    def restore(self, data: bytes) -> None: ...


@runtime_checkable
class KeyedState(Protocol):
    """A state machine whose state is a map of keys to values, so that a protocol that
    replicates *state* rather than an agreed order of commands (eventual) can read and
    overwrite it key by key. The region's KV/VM store is one."""

    def apply(self, index: int, data: bytes) -> bytes | None: ...

    def query(self, data: bytes) -> bytes | None: ...

    def written(self, data: bytes, result: bytes | None) -> list[str]:
        """The keys command ``data`` changed, given what applying it returned."""
        ...

    def value_of(self, key: str) -> bytes | None: ...

    def set_value(self, key: str, value: bytes | None) -> bytes:
        """Make ``key`` hold ``value`` (None: absent); returns a command that says the same
        (what ``Ready.committed`` lists for it)."""
        ...

    def keys(self) -> list[str]: ...


@dataclass(frozen=True, slots=True)
class Footprint:
    """What a command or query touches, for protocols that order only commands that do not
    commute (EPaxos): two footprints interfere when one writes what the other reads or
    writes. ``read_all``: reads every key (a listing); ``write_all``: unknown effect, so it
    interferes with everything (the safe answer when a command cannot be decoded)."""

    writes: tuple[str, ...] = ()
    reads: tuple[str, ...] = ()
    read_all: bool = False
    write_all: bool = False


class Commutative(Protocol):
    """A :class:`StateMachine` that says what each command touches. Commands whose
    footprints do not interfere must commute (same state and results in either order),
    including any bookkeeping the machine keeps besides the data (client sessions)."""

    def command_footprint(self, data: bytes) -> Footprint: ...

    def query_footprint(self, query: bytes) -> Footprint: ...


@dataclass(frozen=True, slots=True)
class GroupTuning:
    """Timing and size knobs every leader-based protocol has (NodeSettings supplies them)."""

    election_timeout: float = 1.0
    heartbeat_interval: float = 0.1
    snapshot_entries: int = 10_000
    read_mode: str = "read_index"  # or "lease" (bounded clock drift; see docs/raft.md)
    # An input this much later than the member's own deadline means the process was not
    # running (CPU starvation): for one election timeout it judges nobody by the silence it
    # could not hear (docs/raft.md). None: off (simulated time never lags).
    lag_tolerance: float | None = None
    # which voter sets decide (``consensus/quorum.py``: "majority", "flexible:q2=2", ...);
    # a protocol that cannot honour it raises :class:`UnsupportedSetting`
    quorum: str = "majority"


class UnsupportedSetting(ValueError):
    """A setting this protocol cannot honour (the node refuses to start, naming it)."""


class GroupMember(Protocol):
    """One member of a consensus group, as its owner drives it."""

    id: NodeId
    # Never vote or campaign (a member that lost its durable state, until re-added).
    abstain: bool

    def on_start(self, now: float) -> Ready: ...

    def on_message(self, now: float, src: NodeId, msg: Any) -> Ready: ...

    def on_tick(self, now: float) -> Ready: ...

    def on_request(self, now: float, request_id: Any, request: Any) -> Ready: ...

    def on_peer_unreachable(self, now: float, peer: NodeId) -> Ready:
        """The transport saw its connection to ``peer`` refused, reset or closed."""
        ...

    def soft_state(self) -> SoftState: ...

    def status(self) -> GroupStatus: ...

    def readded(self) -> bool:
        """An abstaining member has been removed and added again as a learner, and caught
        up past what a leader announced since it started: it may vote once promoted."""
        ...


class GroupDurable(Durable, Protocol):
    """A member's durable state: applies its writes, hands back what a restart recovers."""

    def load(self) -> Any: ...


class LogFormat(Protocol):
    """What a protocol's write records mean, for the runtime's file log
    (``runtime/storage.py``): it appends records and replays them through this."""

    def new_state(self) -> Any: ...

    def apply(self, state: Any, write: Any) -> None:
        """Fold one write record into the recovered state."""
        ...

    def compacts(self, write: Any) -> bool:
        """Whether ``write`` supersedes everything before it (the log is rewritten)."""
        ...

    def base(self, state: Any) -> list[Any]:
        """The records a rewritten log starts with (they recreate ``state``)."""
        ...

    def load(self, state: Any) -> Any:
        """What a restarting member is built from (a copy)."""
        ...

    def is_empty(self, state: Any) -> bool:
        """Nothing durable yet (a first start, or a lost volume)."""
        ...


class ConsensusProtocol(Protocol):
    """A protocol package's entry point (its ``PROTOCOL``), found by name through
    :func:`novacron_core.consensus.registry.protocol`."""

    name: str  # the region setting's value ("raft", "multi-paxos", ...)
    consistency: str  # what an ok reply promises: "linearizable" or "eventual"
    # every record one member sends another (what a transport must accept)
    peer_messages: tuple[type, ...]
    log_format: LogFormat

    def member(
        self,
        node_id: NodeId,
        durable: GroupDurable,
        sm: StateMachine,
        rng: random.Random,
        tuning: GroupTuning,
        voters: tuple[str, ...] = (),
        addresses: tuple[MemberAddress, ...] = (),
    ) -> GroupMember:
        """A member recovered from ``durable``; a first start bootstraps with ``voters``."""
        ...

    def memory_durable(self) -> GroupDurable:
        """Durable state that survives a simulated crash."""
        ...

    def coalesce(self, messages: list[tuple[NodeId, Any]]) -> list[tuple[NodeId, Any]]:
        """Merge what one batch sends so that fewer, larger messages say the same."""
        ...
