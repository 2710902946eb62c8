"""What a new command's attributes are computed from: per key, the highest instance of each
replica that touched it, and the highest ``seq`` among them.

``deps`` is a vector (replica -> instance number) meaning "every interfering instance of that
replica up to this number" (see ``messages``), so the highest interfering instance per
replica is all a replica needs to remember of each key. Reads and writes are kept apart so
that reads do not depend on reads: two reads commute.

Entries are forgotten once every instance they name is executed by every replica
(:meth:`Conflicts.forget`): a command proposed after that executes after them everywhere,
so it need not depend on them, and the map stays as small as the keys in flight.
"""

from __future__ import annotations

from novacron_core.consensus.epaxos.messages import Command, Deps


class Conflicts:
    __slots__ = (
        "access",
        "access_seq",
        "any",
        "any_seq",
        "any_write",
        "any_write_seq",
        "read_all",
        "read_all_seq",
        "write",
        "write_all",
        "write_all_seq",
        "write_seq",
    )

    def __init__(self) -> None:
        # key -> replica -> highest instance that read or wrote it / that wrote it
        self.access: dict[str, Deps] = {}
        self.write: dict[str, Deps] = {}
        self.access_seq: dict[str, int] = {}
        self.write_seq: dict[str, int] = {}
        # commands without keys of their own: listings (read everything), undecodable
        # commands (write everything), and the vectors those depend on
        self.read_all: Deps = {}
        self.write_all: Deps = {}
        self.any_write: Deps = {}
        self.any: Deps = {}
        self.read_all_seq = self.write_all_seq = self.any_write_seq = self.any_seq = 0

    def attributes(self, cmd: Command) -> tuple[int, Deps]:
        """``seq`` and ``deps`` of ``cmd`` as far as this replica knows (the caller merges
        them with what it was sent)."""
        if cmd.noop:
            return 0, {}
        deps: Deps = {}
        seq = 0
        for k in cmd.writes:
            vec = self.access.get(k)
            if vec:
                _merge(deps, vec)
                seq = max(seq, self.access_seq[k])
        for k in cmd.reads:
            vec = self.write.get(k)
            if vec:
                _merge(deps, vec)
                seq = max(seq, self.write_seq[k])
        if cmd.read_all:
            _merge(deps, self.any_write)
            seq = max(seq, self.any_write_seq)
        if cmd.write_all:
            _merge(deps, self.any)
            seq = max(seq, self.any_seq)
        if cmd.writes:
            _merge(deps, self.read_all)
            seq = max(seq, self.read_all_seq)
        _merge(deps, self.write_all)
        seq = max(seq, self.write_all_seq)
        return seq + 1, deps

    def add(self, owner: str, num: int, cmd: Command, seq: int) -> None:
        """Remember that instance ``(owner, num)`` holds ``cmd`` at ``seq``."""
        if cmd.noop:
            return
        for k in cmd.writes:
            _bump(self.access.setdefault(k, {}), owner, num)
            _bump(self.write.setdefault(k, {}), owner, num)
            if seq > self.access_seq.get(k, 0):
                self.access_seq[k] = seq
            if seq > self.write_seq.get(k, 0):
                self.write_seq[k] = seq
        for k in cmd.reads:
            _bump(self.access.setdefault(k, {}), owner, num)
            if seq > self.access_seq.get(k, 0):
                self.access_seq[k] = seq
        if cmd.writes_any():
            _bump(self.any_write, owner, num)
            self.any_write_seq = max(self.any_write_seq, seq)
        _bump(self.any, owner, num)
        self.any_seq = max(self.any_seq, seq)
        if cmd.read_all:
            _bump(self.read_all, owner, num)
            self.read_all_seq = max(self.read_all_seq, seq)
        if cmd.write_all:
            _bump(self.write_all, owner, num)
            self.write_all_seq = max(self.write_all_seq, seq)

    def forget(self, executed_everywhere: Deps) -> int:
        """Drop the keys whose every named instance every replica has executed; returns how
        many keys are left."""
        for table, seqs in ((self.access, self.access_seq), (self.write, self.write_seq)):
            gone = [
                k
                for k, vec in table.items()
                if all(n <= executed_everywhere.get(r, 0) for r, n in vec.items())
            ]
            for k in gone:
                del table[k]
                seqs.pop(k, None)
        return len(self.access)


def _merge(into: Deps, vec: Deps) -> None:
    for r, n in vec.items():
        if n > into.get(r, 0):
            into[r] = n


def _bump(vec: Deps, owner: str, num: int) -> None:
    if num > vec.get(owner, 0):
        vec[owner] = num


def merged(a: Deps, b: Deps) -> Deps:
    """Elementwise max of two dependency vectors (a new dict)."""
    out = dict(a)
    _merge(out, b)
    return out
