"""The deterministic world: a virtual clock, one event queue, one seeded RNG.

Every source of nondeterminism — latency, loss, duplication, timer jitter inside protocols,
fault schedules — draws from ``World.rng`` (or an RNG seeded from it), so a run is a pure
function of (seed, code) and a failing seed replays exactly.

The world drives :class:`~novacron_core.machine.Machine` objects the same way the asyncio
runtime does: it carries out each :class:`~novacron_core.machine.Ready` in order (persist,
send, reply, arm a timer). A crash throws the machine away together with its unsynced writes
(or keeps those, if the fault says the OS flushed them); a restart builds a new machine from
exactly the durable state.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from novacron_core.machine import Durable, Machine, NodeId, Ready
from novacron_core.sim.network import NetConfig, NetStats
from novacron_core.sim.topology import Topology

Factory = Callable[[NodeId, Any], Machine]
ReplyCallback = Callable[[float, Any], None]

_DELIVER, _WAKE, _CALL, _REQUEST = 0, 1, 2, 3


@dataclass(slots=True)
class SimNode:
    name: NodeId
    region: str
    factory: Factory
    durable: Durable
    machine: Machine | None = None
    unsynced: list[Any] = field(default_factory=list)
    incarnation: int = 0
    wake_at: float | None = None
    wake_gen: int = 0
    crashes: int = 0

    @property
    def alive(self) -> bool:
        return self.machine is not None


class World:
    def __init__(
        self,
        seed: int,
        topology: Topology | None = None,
        *,
        net: NetConfig | None = None,
        sizer: Callable[[Any], int] | None = None,
    ) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.topology = topology or Topology.three_regions()
        self.net = net or NetConfig()
        self.stats = NetStats()
        self.now = 0.0
        self.nodes: dict[NodeId, SimNode] = {}
        self.sizer = sizer
        self._queue: list[tuple[float, int, int, Any, Any, Any]] = []
        self._seq = 0
        self._next_request = 0
        self._replies: dict[int, tuple[NodeId, int, ReplyCallback | None]] = {}
        self._latency: dict[tuple[NodeId, NodeId], float] = {}
        self.trace: list[str] | None = None  # set to [] to record a readable event log
        self.observers: list[Callable[[World, NodeId], None]] = []  # after every machine step
        # with every Ready a machine returned, after it was carried out (e.g. to follow what
        # a machine reports in ``committed`` and ``soft_state``)
        self.ready_observers: list[Callable[[World, NodeId, Ready], None]] = []

    # ------------------------------------------------------------ membership

    def add_node(
        self, name: NodeId, region: str, factory: Factory, durable: Durable, start: bool = True
    ) -> None:
        if name in self.nodes:
            raise ValueError(f"node {name!r} exists")
        if region not in self.topology.regions:
            raise ValueError(f"region {region!r} is not in the topology {self.topology.regions}")
        self.nodes[name] = SimNode(name, region, factory, durable)
        if start:
            self.restart(name)

    def machine(self, name: NodeId) -> Any:
        """The live machine object (for tests to inspect); ``None`` while crashed."""
        return self.nodes[name].machine

    def alive(self) -> list[NodeId]:
        return [n for n, s in self.nodes.items() if s.alive]

    # ------------------------------------------------------------ scheduling

    def _push(self, at: float, kind: int, a: Any, b: Any = None, c: Any = None) -> None:
        self._seq += 1
        heapq.heappush(self._queue, (at, self._seq, kind, a, b, c))

    def schedule(self, at: float, callback: Callable[[], None]) -> None:
        """Run ``callback()`` at virtual time ``at`` (clients, workloads, faults)."""
        self._push(max(at, self.now), _CALL, callback)

    def after(self, delay: float, callback: Callable[[], None]) -> None:
        self.schedule(self.now + delay, callback)

    def request(
        self,
        node: NodeId,
        request: Any,
        on_reply: ReplyCallback | None = None,
        delay: float = 0.0,
    ) -> int:
        """Hand a client request to ``node`` after ``delay``; ``on_reply(now, result)`` fires
        if and when the machine replies (never, if it crashes first: clients time out)."""
        self._next_request += 1
        rid = self._next_request
        self._push(self.now + delay, _REQUEST, node, rid, (request, on_reply))
        return rid

    # ------------------------------------------------------------ running

    def step(self) -> bool:
        """Process one event; False when the queue is empty."""
        if not self._queue:
            return False
        at, _, kind, a, b, c = heapq.heappop(self._queue)
        self.now = at
        self._dispatch(kind, a, b, c)
        return True

    def run_until(self, t: float) -> None:
        queue = self._queue
        pop = heapq.heappop
        dispatch = self._dispatch
        while queue and queue[0][0] <= t:
            at, _, kind, a, b, c = pop(queue)
            self.now = at
            dispatch(kind, a, b, c)
        if t > self.now:
            self.now = t

    def run_for(self, dt: float) -> None:
        self.run_until(self.now + dt)

    def run_while(self, cond: Callable[[], bool], limit: float) -> bool:
        """Step until ``cond()`` is false or virtual time passes ``limit``; True if cond ended."""
        while cond():
            if not self._queue or self._queue[0][0] > limit:
                self.now = max(self.now, limit)
                return not cond()
            self.step()
        return True

    def _dispatch(self, kind: int, a: Any, b: Any, c: Any) -> None:
        if kind == _DELIVER:
            node = self.nodes[a]
            machine = node.machine
            if machine is None:
                return
            self.stats.messages_delivered += 1
            self._carry_out(node, machine.on_message(self.now, b, c))
        elif kind == _WAKE:
            node = self.nodes[a]
            if node.machine is None or b != node.wake_gen:
                return
            node.wake_at = None
            self._carry_out(node, node.machine.on_tick(self.now))
        elif kind == _CALL:
            a()
        else:  # _REQUEST
            node = self.nodes[a]
            if node.machine is None:
                return
            request, on_reply = c
            self._replies[b] = (a, node.incarnation, on_reply)
            self._carry_out(node, node.machine.on_request(self.now, b, request))

    def _carry_out(self, node: SimNode, ready: Ready) -> None:
        if ready.writes:
            if ready.sync:
                if node.unsynced:
                    node.durable.apply(node.unsynced)
                    node.unsynced = []
                node.durable.apply(ready.writes)
            else:
                node.unsynced.extend(ready.writes)
        elif ready.sync and node.unsynced:
            node.durable.apply(node.unsynced)
            node.unsynced = []
        if ready.messages:
            for dst, msg in ready.messages:
                self._send(node, dst, msg)
        if ready.replies:
            for rid, result in ready.replies:
                entry = self._replies.pop(rid, None)
                if entry is not None and entry[2] is not None:
                    entry[2](self.now, result)
        wake = ready.wake_at
        if wake is not None and (node.wake_at is None or wake < node.wake_at):
            node.wake_at = wake
            node.wake_gen += 1
            self._push(max(wake, self.now), _WAKE, node.name, node.wake_gen)
        if self.observers:
            for obs in self.observers:
                obs(self, node.name)
        if self.ready_observers:
            for robs in self.ready_observers:
                robs(self, node.name, ready)

    def inject(self, name: NodeId, event: Callable[[Any], Ready]) -> None:
        """Feed ``name``'s machine an input other than a message, a request or a tick, now,
        as ``event(machine)`` (e.g. ``lambda m: m.on_peer_unreachable(world.now, peer)``),
        and carry out its Ready; nothing happens while it is down."""
        node = self.nodes[name]
        if node.machine is not None:
            self._carry_out(node, event(node.machine))

    def _send(self, src: SimNode, dst: NodeId, msg: Any) -> None:
        stats = self.stats
        stats.messages_sent += 1
        if self.sizer is not None:
            stats.bytes_sent += self.sizer(msg)
        net = self.net
        if (net.groups or net.blocked) and net.cut(src.name, dst):
            stats.messages_dropped += 1
            return
        rng = self.rng
        if net.drop_rate and rng.random() < net.drop_rate:
            stats.messages_dropped += 1
            return
        base = self._latency.get((src.name, dst))
        if base is None:
            target = self.nodes.get(dst)
            if target is None:
                stats.messages_dropped += 1
                return
            base = self.topology.one_way_s(src.region, target.region)
            self._latency[(src.name, dst)] = base
        jitter = net.jitter
        self._push(self.now + base * (1.0 + jitter * rng.random()), _DELIVER, dst, src.name, msg)
        if net.dup_rate and rng.random() < net.dup_rate:
            stats.messages_duplicated += 1
            self._push(
                self.now + base * (1.0 + 2 * jitter * rng.random()), _DELIVER, dst, src.name, msg
            )

    # ------------------------------------------------------------ faults

    def crash(self, name: NodeId, lose_unsynced: bool = True) -> None:
        """Stop ``name`` now. Unsynced writes are lost, or flushed if ``lose_unsynced`` is False.
        Pending client requests on it never get a reply."""
        node = self.nodes[name]
        if node.machine is None:
            return
        if node.unsynced and not lose_unsynced:
            node.durable.apply(node.unsynced)
        node.unsynced = []
        node.machine = None
        node.crashes += 1
        node.wake_at = None
        node.wake_gen += 1
        self._log(f"crash {name} lose_unsynced={lose_unsynced}")

    def restart(self, name: NodeId) -> None:
        """(Re)start ``name`` from exactly its durable state."""
        node = self.nodes[name]
        if node.machine is not None:
            return
        node.incarnation += 1
        node.machine = node.factory(name, node.durable)
        self._log(f"start {name} (incarnation {node.incarnation})")
        self._carry_out(node, node.machine.on_start(self.now))

    def partition(self, groups: Iterable[Iterable[str]]) -> None:
        """Split into groups of node or region names; nodes left unnamed form one more group."""
        mapping: dict[str, int] = {}
        for i, group in enumerate(groups):
            for member in group:
                if member in self.nodes:
                    mapping[member] = i
                else:
                    matched = [n for n, s in self.nodes.items() if s.region == member]
                    if not matched:
                        raise ValueError(f"{member!r} is neither a node nor a region with nodes")
                    for n in matched:
                        mapping[n] = i
        rest = len(mapping) and max(mapping.values()) + 1
        for n in self.nodes:
            mapping.setdefault(n, rest)
        self.net.groups = mapping
        self._log(f"partition {sorted(mapping.items())}")

    def block(self, src: NodeId, dst: NodeId) -> None:
        """Drop everything from ``src`` to ``dst`` (one direction only)."""
        self.net.blocked.add((src, dst))
        self._log(f"block {src}->{dst}")

    def heal(self) -> None:
        self.net.groups = {}
        self.net.blocked = set()
        self._log("heal")

    def _log(self, line: str) -> None:
        if self.trace is not None:
            self.trace.append(f"{self.now:.6f} {line}")
