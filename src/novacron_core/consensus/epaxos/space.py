"""The instance space as one replica knows it: instances by owner, what it is missing."""

from __future__ import annotations

from novacron_core.consensus.epaxos.messages import NONE, Command, Deps, InstanceState


class Inst:
    """An instance in memory (mutable; :class:`InstanceState` is its durable form)."""

    __slots__ = ("bal", "cmd", "deps", "eq", "executed", "num", "owner", "seq", "status", "vbal")

    def __init__(self, owner: str, num: int) -> None:
        self.owner = owner
        self.num = num
        self.status = NONE
        self.cmd: Command | None = None
        self.seq = 0
        self.deps: Deps = {}
        self.bal = 0
        self.vbal = 0
        self.eq = False
        self.executed = False

    @property
    def iid(self) -> tuple[str, int]:
        return (self.owner, self.num)

    def record(self) -> InstanceState:
        return InstanceState(
            self.owner,
            self.num,
            self.status,
            self.cmd,
            self.seq,
            dict(self.deps),
            self.bal,
            self.vbal,
            self.eq,
        )

    @classmethod
    def of(cls, rec: InstanceState) -> Inst:
        inst = cls(rec.owner, rec.num)
        inst.status, inst.cmd, inst.seq = rec.status, rec.cmd, rec.seq
        inst.deps = dict(rec.deps)
        inst.bal, inst.vbal, inst.eq = rec.bal, rec.vbal, rec.eq
        return inst

    def __repr__(self) -> str:
        return (
            f"Inst({self.owner}.{self.num} s={self.status} seq={self.seq} deps={self.deps} "
            f"bal={self.bal} vbal={self.vbal} eq={self.eq} x={self.executed} cmd={self.cmd})"
        )


class Space:
    """Instances by owner and number; ``seen``: the highest number known of each owner;
    ``missing``: numbers at or below it that this replica has no command for (it cannot
    execute past them, and fetches or recovers them); ``floor``: per owner, everything at
    or below it was executed by every replica and compacted away."""

    __slots__ = ("by_owner", "floor", "missing", "seen")

    def __init__(self) -> None:
        self.by_owner: dict[str, dict[int, Inst]] = {}
        self.seen: dict[str, int] = {}
        self.missing: dict[str, set[int]] = {}
        self.floor: dict[str, int] = {}

    def get(self, owner: str, num: int) -> Inst | None:
        insts = self.by_owner.get(owner)
        return None if insts is None else insts.get(num)

    def ensure(self, owner: str, num: int) -> Inst:
        insts = self.by_owner.setdefault(owner, {})
        inst = insts.get(num)
        if inst is None:
            inst = insts[num] = Inst(owner, num)
            self.note(owner, num)
        return inst

    def put(self, inst: Inst) -> None:
        self.by_owner.setdefault(inst.owner, {})[inst.num] = inst
        self.note(inst.owner, inst.num)
        if inst.cmd is not None:
            self.known(inst)

    def note(self, owner: str, num: int) -> None:
        """Instance ``num`` of ``owner`` exists (it was named somewhere)."""
        top = self.seen.get(owner, 0)
        if num <= top:
            return
        floor = self.floor.get(owner, 0)
        insts = self.by_owner.get(owner, {})
        miss = self.missing.setdefault(owner, set())
        for n in range(max(top, floor) + 1, num + 1):
            i = insts.get(n)
            if i is None or i.cmd is None:
                miss.add(n)
        self.seen[owner] = num

    def known(self, inst: Inst) -> None:
        """``inst`` now has a command."""
        miss = self.missing.get(inst.owner)
        if miss:
            miss.discard(inst.num)

    def note_deps(self, deps: Deps) -> None:
        for r, n in deps.items():
            self.note(r, n)

    def first_missing(self, owner: str, above: int, upto: int) -> int | None:
        """The lowest missing number of ``owner`` in ``(above, upto]``."""
        miss = self.missing.get(owner)
        if not miss:
            return None
        best: int | None = None
        for n in miss:
            if above < n <= upto and (best is None or n < best):
                best = n
        return best

    def compact(self, horizon: Deps) -> int:
        """Drop every instance at or below ``horizon`` (executed by every replica)."""
        dropped = 0
        for owner, h in horizon.items():
            if h <= self.floor.get(owner, 0):
                continue
            self.floor[owner] = h
            insts = self.by_owner.get(owner, {})
            for n in [n for n in insts if n <= h]:
                del insts[n]
                dropped += 1
            miss = self.missing.get(owner)
            if miss:
                miss.difference_update([n for n in miss if n <= h])
            if self.seen.get(owner, 0) < h:
                self.seen[owner] = h
        return dropped

    def count(self) -> int:
        return sum(len(v) for v in self.by_owner.values())
