"""Simulator throughput: simulated messages delivered per second of wall time.

The workload is a trivial echo protocol: ``pairs`` node pairs each keep ``window``
messages in flight across regions. The peer is SimPy (a general discrete-event simulator)
delivering the same messages with the same latencies: the ratio says what our specialised
event loop buys.
"""

from __future__ import annotations

import time
from typing import Any

from benchmarks.common import result
from novacron_core.machine import Ready
from novacron_core.sim import Topology, World


class _Echo:
    __slots__ = ()

    def on_start(self, now: float) -> Ready:
        return Ready()

    def on_message(self, now: float, src: str, msg: Any) -> Ready:
        return Ready(messages=[(src, msg)])

    def on_tick(self, now: float) -> Ready:
        return Ready()

    def on_request(self, now: float, request_id: Any, request: Any) -> Ready:
        return Ready(messages=[(request, 0)])


class _NoDisk:
    def apply(self, writes: list[Any]) -> None:
        pass


def ours(messages: int, pairs: int = 8, window: int = 16) -> float:
    world = World(1, Topology.three_regions())
    regions = world.topology.regions
    for p in range(pairs):
        world.add_node(f"a{p}", regions[p % 3], lambda n, d: _Echo(), _NoDisk())
        world.add_node(f"b{p}", regions[(p + 1) % 3], lambda n, d: _Echo(), _NoDisk())
    for p in range(pairs):
        for _ in range(window):
            world.request(f"a{p}", f"b{p}")
    start = time.perf_counter()
    while world.stats.messages_delivered < messages and world.step():
        pass
    elapsed = time.perf_counter() - start
    return world.stats.messages_delivered / elapsed


def simpy_peer(messages: int, pairs: int = 8, window: int = 16) -> float | None:
    try:
        import random

        import simpy
    except ImportError:
        return None
    topo = Topology.three_regions()
    regions = topo.regions
    env = simpy.Environment()
    rng = random.Random(1)
    delivered = [0]

    def bounce(a: str, b: str) -> Any:
        one_way = topo.one_way_s(a, b)
        while True:
            yield env.timeout(one_way * (1 + 0.1 * rng.random()))
            delivered[0] += 1
            if delivered[0] >= messages:
                return

    for p in range(pairs):
        for _ in range(window):
            env.process(bounce(regions[p % 3], regions[(p + 1) % 3]))
    start = time.perf_counter()
    while delivered[0] < messages and env.peek() != float("inf"):
        env.step()
    return delivered[0] / (time.perf_counter() - start)


def run(quick: bool = False) -> dict[str, Any]:
    n = 300_000 if quick else 2_000_000
    ours(20_000)  # warm-up
    figure = ours(n)
    peer = simpy_peer(n)
    peers = {"simpy_msgs_per_s": peer} if peer else {"simpy_msgs_per_s": "not installed"}
    ratios = {"vs_simpy": figure / peer} if peer else {}
    return result(
        "sim",
        {"msgs_per_s": figure, "target_msgs_per_s": 200_000},
        peers,
        ratios,
        {"messages": n, "pairs": 8, "window": 16, "topology": "three_regions"},
    )
