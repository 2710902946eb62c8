"""A tiny data-driven harness in the spirit of etcd-raft's interaction tests.

Messages are queued per recipient and only move when a step says so, so a scenario can
build exact interleavings (the Raft paper's figure 8) that random schedules rarely hit.
One step per line; ``#`` starts a comment. Steps:

    nodes n1 n2 n3          founding voters          spares n4       joining nodes
    config key=value ...    RaftConfig overrides (before nodes)
    campaign X              X's election timer fires now
    tick X [X...]           run X's timers at the current time
    time T                  advance the clock by T seconds
    deliver X [X...]        hand each X the messages queued for it (once)
    drop X [X...]           throw away the messages queued for X
    stabilize [X...]        deliver among the listed (default: live) nodes until quiet
    partition a b | c       messages across groups are dropped on delivery; heal
    crash X / restart X     restart rebuilds X from exactly what it persisted
    put X key value         propose a put on X (its reply is remembered under key)
    member X action node    propose a membership change on X
    transfer X target       ask leader X to hand leadership to target
    expect role|term|commit|last|lag|leader|value|log|voters|learners|reply|snapshot
"""

from __future__ import annotations

import random
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

from novacron_core.codec import encode
from novacron_core.consensus.kv import PUT, KVCommand, KVStore
from novacron_core.consensus.raft import (
    ChangeMember,
    MemoryStorage,
    Propose,
    RaftConfig,
    RaftNode,
    Reply,
    TransferLeader,
)
from novacron_core.machine import Ready


class Scenario:
    def __init__(self) -> None:
        self.config = RaftConfig(election_timeout=1.0, heartbeat_interval=0.1)
        self.voters: tuple[str, ...] = ()
        self.names: list[str] = []
        self.nodes: dict[str, RaftNode | None] = {}
        self.disks: dict[str, MemoryStorage] = {}
        self.inbox: dict[str, list[tuple[str, Any]]] = {}
        self.groups: dict[str, int] = {}
        self.replies: dict[str, Reply] = {}
        self.now = 0.0
        self.rng = random.Random(1)

    # ---------------------------------------------------------------- plumbing

    def _start(self, name: str) -> None:
        initial = self.voters if name in self.voters else ()
        node = RaftNode(
            name,
            self.disks[name].load(),
            KVStore(),
            random.Random(self.rng.getrandbits(32)),
            self.config,
            initial,
        )
        self.nodes[name] = node
        self._handle(name, node.on_start(self.now))

    def node(self, name: str) -> RaftNode:
        n = self.nodes[name]
        assert n is not None, f"{name} is down"
        return n

    def _handle(self, name: str, ready: Ready, tag: Any = None) -> None:
        self.disks[name].apply(ready.writes)
        for dst, msg in ready.messages:
            if self.nodes.get(dst) is not None:
                self.inbox[dst].append((name, msg))
        for rid, result in ready.replies:
            self.replies[str(rid)] = result

    def _deliver(self, name: str, among: set[str] | None = None) -> bool:
        msgs, self.inbox[name] = self.inbox[name], []
        node = self.nodes[name]
        moved = False
        for src, msg in msgs:
            if among is not None and src not in among:
                self.inbox[name].append((src, msg))  # keep for later
                continue
            cut = self.groups and self.groups.get(src, -1) != self.groups.get(name, -1)
            if node is None or cut:
                continue
            moved = True
            self._handle(name, node.on_message(self.now, src, msg))
        return moved

    # ---------------------------------------------------------------- steps

    def run(self, path: Path) -> None:
        for lineno, raw in enumerate(path.read_text().splitlines(), 1):
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            try:
                self.step(line.split())
            except AssertionError as e:
                raise AssertionError(f"{path.name}:{lineno}: {line}\n  {e}") from None

    def step(self, w: list[str]) -> None:
        cmd, args = w[0], w[1:]
        if cmd == "config":
            kv = dict(a.split("=") for a in args)
            kinds = {f.name: f.type for f in fields(RaftConfig)}
            conv = {
                "float": float,
                "float | None": float,
                "int": int,
                "bool": lambda s: s == "true",
                "str": str,
            }
            params = {k: conv[str(kinds[k])](v) for k, v in kv.items()}
            self.config = replace(self.config, **params)
        elif cmd in ("nodes", "spares"):
            if cmd == "nodes":
                self.voters = tuple(args)
            for n in args:
                self.names.append(n)
                self.disks[n] = MemoryStorage()
                self.inbox[n] = []
                self._start(n)
        elif cmd == "campaign":
            node = self.node(args[0])
            node.election_deadline = self.now
            self._handle(args[0], node.on_tick(self.now))
        elif cmd == "tick":
            for n in args:
                self._handle(n, self.node(n).on_tick(self.now))
        elif cmd == "time":
            self.now += float(args[0])
        elif cmd == "deliver":
            for n in args:
                self._deliver(n)
        elif cmd == "drop":
            for n in args:
                self.inbox[n] = []
        elif cmd == "stabilize":
            among = set(args) if args else None
            group = args or self.names
            for _ in range(1000):
                if not any([self._deliver(n, among) for n in group]):
                    break
        elif cmd == "partition":
            self.groups = {}
            gi = 0
            for a in args:
                if a == "|":
                    gi += 1
                else:
                    self.groups[a] = gi
        elif cmd == "heal":
            self.groups = {}
        elif cmd == "crash":
            self.nodes[args[0]] = None
            self.inbox[args[0]] = []
        elif cmd == "restart":
            self._start(args[0])
        elif cmd == "put":
            name, key, value = args
            cmd_ = KVCommand(PUT, key, value.encode())
            self._handle(name, self.node(name).on_request(self.now, key, Propose(encode(cmd_))))
        elif cmd == "member":
            name, action, target = args
            req = ChangeMember(action, target)
            self._handle(name, self.node(name).on_request(self.now, "member", req))
        elif cmd == "transfer":
            name, target = args
            req_t = TransferLeader(target)
            self._handle(name, self.node(name).on_request(self.now, "transfer", req_t))
        elif cmd == "expect":
            self.expect(args)
        else:
            raise ValueError(f"unknown step {cmd!r}")

    def expect(self, a: list[str]) -> None:
        what = a[0]
        if what == "reply":
            got = self.replies.get(a[1])
            assert (got.status if got else "none") == a[2], f"reply {a[1]}: {got}"
            return
        n = self.node(a[1])
        if what == "leader":
            assert n.role == "leader", f"{a[1]} is {n.role} (term {n.term}), not leader"
        elif what == "role":
            assert n.role == a[2], f"{a[1]} is {n.role}"
        elif what in ("term", "commit", "last", "lag"):
            got_i = {"term": n.term, "commit": n.commit, "last": n.log.last_index, "lag": n.lag()}[
                what
            ]
            assert got_i == int(a[2]), f"{a[1]} {what} is {got_i}, expected {a[2]}; {n.status()}"
        elif what == "snapshot":
            assert n.log.snap.index >= int(a[2]), f"{a[1]} snapshot at {n.log.snap.index}"
        elif what == "value":
            sm = n.sm
            assert isinstance(sm, KVStore)
            got = sm.data.get(a[2])
            want = None if a[3] == "-" else a[3].encode()
            assert got == want, f"{a[1]} has {a[2]}={got!r}, expected {want!r}"
        elif what == "log":  # terms of the entries after the snapshot, in order
            terms = [str(e.term) for e in n.log.entries]
            assert terms == a[2:], f"{a[1]} log terms {terms}, expected {a[2:]}"
        elif what in ("voters", "learners"):
            got_m = list(getattr(n.conf, what))
            assert got_m == a[2:], f"{a[1]} {what} {got_m}"
        else:
            raise ValueError(f"unknown expectation {what!r}")
