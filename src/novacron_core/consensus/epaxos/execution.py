"""Executing committed instances in one order on every replica (EPaxos §4.3.2).

A committed instance's dependencies name, per replica, the highest interfering instance it
must follow. Execution walks that graph with Tarjan's algorithm: each strongly connected
component comes out after every component it depends on, and is executed then, its members
in increasing ``(seq, owner, num)``: the same order on every replica, because every replica
has the same committed attributes. An instance that depends on one not yet committed here
(or not even known here) waits; so does everything that depends on it.

The walk only looks at interfering instances (a command on another key is not an edge), so
writes to different VMs never wait for each other; to find them fast, the unexecuted
instances are indexed by key.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable

from novacron_core.consensus.epaxos.messages import COMMITTED, Deps, interferes
from novacron_core.consensus.epaxos.space import Inst, Space

Blocked = tuple[str, int]


class Executor:
    def __init__(self, space: Space, apply: Callable[[Inst], None]) -> None:
        self.space = space
        self.apply = apply
        # executed: every number up to ``upto[owner]``, and ``extra[owner]`` above it
        self.upto: Deps = {}
        self.extra: dict[str, set[int]] = {}
        self.count = 0  # instances executed here (the index of the last one)
        self.pending: set[Inst] = set()  # committed, not executed
        # unexecuted instances with a command, per key and owner (sorted numbers), and
        # those without keys of their own (listings, undecodable commands)
        self.by_key: dict[str, dict[str, list[int]]] = {}
        self.wide: dict[str, list[int]] = {}
        self.blocked_on: set[Blocked] = set()  # what the last run waited for

    # ------------------------------------------------------------ bookkeeping

    def executed(self, owner: str, num: int) -> bool:
        return num <= self.upto.get(owner, 0) or num in self.extra.get(owner, ())

    def index(self, inst: Inst) -> None:
        """``inst`` got its command (call once per instance)."""
        cmd = inst.cmd
        if cmd is None or cmd.noop or inst.executed:
            return
        for k in (*cmd.writes, *cmd.reads):
            bisect.insort(self.by_key.setdefault(k, {}).setdefault(inst.owner, []), inst.num)
        if cmd.read_all or cmd.write_all:
            bisect.insort(self.wide.setdefault(inst.owner, []), inst.num)

    def forget(self, inst: Inst) -> None:
        """Drop ``inst`` from the key index (executed, or its command was replaced)."""
        cmd = inst.cmd
        if cmd is None or cmd.noop:
            return
        for k in (*cmd.writes, *cmd.reads):
            owners = self.by_key.get(k)
            if owners is not None:
                _remove(owners.get(inst.owner), inst.num)
                if not owners.get(inst.owner):
                    owners.pop(inst.owner, None)
                    if not owners:
                        del self.by_key[k]
        if cmd.read_all or cmd.write_all:
            _remove(self.wide.get(inst.owner), inst.num)

    def committed(self, inst: Inst) -> None:
        if not inst.executed:
            self.pending.add(inst)

    def mark(self, inst: Inst) -> None:
        """Record ``inst`` as executed (also used when restoring from a snapshot)."""
        inst.executed = True
        self.pending.discard(inst)
        self.forget(inst)
        owner, num = inst.owner, inst.num
        top = self.upto.get(owner, 0)
        if num <= top:
            return
        extra = self.extra.setdefault(owner, set())
        if num == top + 1:
            top += 1
            while top + 1 in extra:
                top += 1
                extra.discard(top)
            self.upto[owner] = top
        else:
            extra.add(num)

    # ------------------------------------------------------------ running

    def run(self) -> int:
        """Execute everything that can be; returns how many instances were executed."""
        done = 0
        self.blocked_on = set()
        stuck: set[Inst] = set()
        for inst in sorted(self.pending, key=_order):
            if inst.executed or inst in stuck:
                continue
            done += self._walk(inst, stuck)
        return done

    def _walk(self, root: Inst, stuck: set[Inst]) -> int:
        """Tarjan from ``root`` (iterative). Components are executed as they complete; on
        meeting something that must wait, everything on the stack waits too."""
        index: dict[Inst, int] = {}
        low: dict[Inst, int] = {}
        stack: list[Inst] = []
        on_stack: set[Inst] = set()
        calls: list[tuple[Inst, list[Inst], int]] = []
        done = 0
        edges = self._edges(root)
        if isinstance(edges, tuple):
            self.blocked_on.add(edges)
            stuck.add(root)
            return 0
        index[root] = low[root] = 0
        stack.append(root)
        on_stack.add(root)
        calls.append((root, edges, 0))
        counter = 1
        while calls:
            v, out, i = calls[-1]
            descended = False
            while i < len(out):
                w = out[i]
                i += 1
                if w.executed:
                    continue
                if w in stuck:
                    self._give_up(stack, stuck)
                    return done
                if w not in index:
                    wedges = self._edges(w)
                    if isinstance(wedges, tuple):
                        self.blocked_on.add(wedges)
                        stuck.add(w)
                        self._give_up(stack, stuck)
                        return done
                    calls[-1] = (v, out, i)
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on_stack.add(w)
                    calls.append((w, wedges, 0))
                    descended = True
                    break
                if w in on_stack and index[w] < low[v]:
                    low[v] = index[w]
            if descended:
                continue
            calls.pop()
            if calls:
                parent = calls[-1][0]
                if low[v] < low[parent]:
                    low[parent] = low[v]
            if low[v] == index[v]:
                component: list[Inst] = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    component.append(w)
                    if w is v:
                        break
                component.sort(key=_order)
                for w in component:
                    self.count += 1
                    self.apply(w)
                    self.mark(w)
                    done += 1
        return done

    @staticmethod
    def _give_up(stack: list[Inst], stuck: set[Inst]) -> None:
        stuck.update(stack)

    def _edges(self, v: Inst) -> list[Inst] | Blocked:
        """The unexecuted instances ``v`` must follow, or what it waits for."""
        cmd = v.cmd
        assert cmd is not None
        if cmd.noop:
            return []
        space = self.space
        out: list[Inst] = []
        for q, d in v.deps.items():
            lo = self.upto.get(q, 0)
            if d <= lo:
                continue
            gap = space.first_missing(q, lo, d)
            if gap is not None and not (q == v.owner and gap == v.num):
                return (q, gap)
            nums: set[int] = set()
            if cmd.read_all or cmd.write_all:
                insts = space.by_owner.get(q, {})
                nums.update(n for n in range(lo + 1, d + 1) if n in insts)
            else:
                by_key = self.by_key
                for k in (*cmd.writes, *cmd.reads):
                    lst = by_key.get(k, {}).get(q)
                    if lst:
                        nums.update(lst[: bisect.bisect_right(lst, d)])
                lst = self.wide.get(q)
                if lst:
                    nums.update(lst[: bisect.bisect_right(lst, d)])
            for n in nums:
                if q == v.owner and n == v.num:
                    continue
                w = space.get(q, n)
                if w is None or w.cmd is None:
                    return (q, n)
                if w.executed or not interferes(cmd, w.cmd):
                    continue
                if w.status != COMMITTED:
                    return (q, n)
                out.append(w)
        return out


def _order(inst: Inst) -> tuple[int, str, int]:
    return (inst.seq, inst.owner, inst.num)


def _remove(lst: list[int] | None, num: int) -> None:
    if not lst:
        return
    i = bisect.bisect_left(lst, num)
    if i < len(lst) and lst[i] == num:
        del lst[i]
