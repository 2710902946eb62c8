"""The agent's decisions in virtual time: three regions with the demo's RTT matrix, probes
over a simulated WAN, a link cut, and the reroute through the third region."""

from __future__ import annotations

import heapq
import itertools
import random

import pytest

from novacron_core.routing.agent import AgentCore
from novacron_core.routing.qos import QoS
from novacron_core.sim.seeds import replay_hint, sim_seeds
from novacron_core.sim.topology import COCKROACH_DEMO_RTT_MS, Topology

REGIONS = Topology.three_regions()


class Wan:
    """Delivers each message after its pair's one-way delay (plus jitter); cut pairs drop."""

    def __init__(self, seed: int, jitter: float = 0.05, loss: float = 0.0) -> None:
        self.rng = random.Random(seed)
        self.jitter, self.loss = jitter, loss
        self.cut: set[frozenset[str]] = set()
        self.agents = {
            r: AgentCore(r, r, [(o, o) for o in REGIONS.regions if o != r]) for r in REGIONS.regions
        }
        self.queue: list[tuple[float, int, str, str, object]] = []
        self.n = 0
        self.wakes: dict[str, float] = {}
        self.last_compute: dict[str, float] = {r: -10.0 for r in REGIONS.regions}

    def push(self, at: float, dst: str, src: str, msg: object) -> None:
        self.n += 1
        heapq.heappush(self.queue, (at, self.n, dst, src, msg))

    def carry(self, now: float, src: str, ready) -> None:
        for dst, msg in ready.messages:
            if frozenset((src, dst)) in self.cut or self.rng.random() < self.loss:
                continue
            one_way = REGIONS.one_way_s(src, dst) * (1 + self.rng.uniform(0, self.jitter))
            self.push(now + one_way, dst, src, msg)
        if ready.wake_at is not None:
            self.push(ready.wake_at, src, "", "tick")

    def background(self, now: float) -> None:
        """What the runtime does in a worker thread: recompute when due (at most 1/s)."""
        for name, a in self.agents.items():
            if a.router.due and (a.router.table.stale or now - self.last_compute[name] >= 1.0):
                a.router.install(a.router.compute(a.router.snapshot()))
                self.last_compute[name] = now

    def run_until(self, end: float, start: float = 0.0) -> None:
        if start == 0.0:
            for name, a in self.agents.items():
                self.carry(0.0, name, a.on_start(0.0))
        next_bg = start
        while self.queue and self.queue[0][0] <= end:
            now, _, dst, src, msg = heapq.heappop(self.queue)
            if now >= next_bg:
                self.background(now)
                next_bg = now + 0.05
            a = self.agents[dst]
            ready = a.on_tick(now) if msg == "tick" else a.on_message(now, src, msg)
            self.carry(now, dst, ready)


def _route(agent: AgentCore, dst: str):
    return agent.router.table.path(dst, QoS.CRITICAL)


@pytest.mark.parametrize("seed", sim_seeds(3))
def test_measured_matrix_matches_the_wan_and_a_cut_reroutes_through_the_third_region(seed):
    wan = Wan(seed)
    wan.run_until(5.0)
    east, west, eu = "us-east1", "us-west1", "europe-west1"
    for name, agent in wan.agents.items():
        for (a, b), rtt in COCKROACH_DEMO_RTT_MS.items():
            link = agent.topology.link(a, b)
            assert link is not None, f"{name} does not know {a}-{b} ({replay_hint(seed)})"
            # within 10 % of the configured RTT (jitter here adds up to 5 %)
            assert link.rtt_ms == pytest.approx(rtt, rel=0.10), (name, a, b, link.rtt_ms)
    # west-eu (146 ms) is slower than west-east-eu (66 + 64): routing already goes around
    assert _route(wan.agents[west], eu) == (west, east, eu)
    assert _route(wan.agents[east], west) == (east, west)
    wan.cut.add(frozenset((east, west)))
    cut_at = 5.0
    rerouted: dict[str, float] = {}
    t = cut_at
    while t < cut_at + 2.0 and len(rerouted) < 2:
        t += 0.01
        wan.run_until(t, start=t - 0.01)
        for me, other in ((west, east), (east, west)):
            if me not in rerouted and _route(wan.agents[me], other) == (me, eu, other):
                rerouted[me] = t - cut_at
    assert set(rerouted) == {west, east}, replay_hint(seed)
    assert max(rerouted.values()) < 1.0, (rerouted, replay_hint(seed))
    # the third region learns of the cut from the others' adverts
    wan.run_until(t + 1.0, start=t)
    assert not wan.agents[eu].topology.link(east, west).up
    events = [e.kind for e in wan.agents[west].events]
    assert "link-down" in events
    assert "reroute" in events
    # healed: the link comes back up and, after the background recomputation, the direct
    # route returns
    wan.cut.clear()
    wan.run_until(t + 4.0, start=t + 1.0)
    assert wan.agents[west].topology.link(east, west).up
    assert _route(wan.agents[west], east) == (west, east), replay_hint(seed)


def test_vivaldi_coordinates_converge_on_the_probes():
    wan = Wan(seed=1)
    wan.run_until(20.0)
    errs = []
    for (a, b), rtt in COCKROACH_DEMO_RTT_MS.items():
        est = wan.agents[a].coords.rtt_ms(b)
        assert est is not None
        errs.append(abs(est - rtt) / rtt)
    assert sorted(errs)[1] < 0.15, errs  # the median of three pairs


def test_a_lossy_link_is_not_declared_down_by_scattered_losses():
    wan = Wan(seed=3, loss=0.05)
    wan.run_until(6.0)
    for agent in wan.agents.values():
        assert all(link.up for link in agent.topology.links())
        assert all(0 < p["loss"] < 0.3 for p in agent.peer_stats().values())


def test_wire_roundtrip_and_malformed_datagrams_are_refused():
    from novacron_core.routing.agent import LSA, LinkReport, Ping
    from novacron_core.routing.vivaldi import Coordinate
    from novacron_core.runtime.agent.wire import WireError, decode, encode

    c = Coordinate((0.01,) * 8, 0.5, 0.001, 1e-5)
    msg = Ping(
        3, 12.5, "a", "r1", c, (LSA("b", "r2", 4, (LinkReport("c", 10.0, 0.1, True, 1e3),), c),)
    )
    assert decode(encode(msg)) == msg
    for bad in (b"", b"\x93\x01\x02\x03", encode(msg)[:-3], b"x" * 9000):
        with pytest.raises(WireError):
            decode(bad)
    nan = Ping(
        3, 1.0, "a", "r1", None, (LSA("b", "r2", 1, (LinkReport("c", float("nan"), 0, True, 1),)),)
    )
    with pytest.raises(WireError, match="out of range"):
        decode(encode(nan))


class Wan5(Wan):
    """Five regions (the simulator's matrix) under a random schedule of link cuts and heals."""

    def __init__(self, seed: int, loss: float) -> None:
        self.regions5 = Topology.five_regions()
        super().__init__(seed, jitter=0.05, loss=loss)
        self.agents = {
            r: AgentCore(r, r, [(o, o) for o in self.regions5.regions if o != r])
            for r in self.regions5.regions
        }
        self.last_compute = {r: -10.0 for r in self.regions5.regions}

    def carry(self, now: float, src: str, ready) -> None:
        for dst, msg in ready.messages:
            if frozenset((src, dst)) in self.cut or self.rng.random() < self.loss:
                continue
            one_way = self.regions5.one_way_s(src, dst) * (1 + self.rng.uniform(0, self.jitter))
            self.push(now + one_way, dst, src, msg)
        if ready.wake_at is not None:
            self.push(ready.wake_at, src, "", "tick")


@pytest.mark.parametrize("seed", sim_seeds(4, base=100))
def test_under_random_cuts_and_heals_routes_settle_on_uncut_links(seed):
    import networkx as nx

    wan = Wan5(seed, loss=0.01)
    rng = random.Random(seed)
    names = list(wan.regions5.regions)
    pairs = [frozenset(p) for p in itertools.combinations(names, 2)]
    t = 3.0
    wan.run_until(t)
    for _ in range(4):  # four rounds: change the cut set, let it settle, check
        for p in rng.sample(pairs, rng.randint(1, 3)):
            wan.cut.symmetric_difference_update({p})
        wan.run_until(t + 2.5, start=t)
        t += 2.5
        truth = nx.Graph([tuple(p) for p in pairs if p not in wan.cut])
        truth.add_nodes_from(names)
        for me, agent in wan.agents.items():
            for dst in names:
                if dst == me:
                    continue
                path = agent.router.table.path(dst, QoS.CRITICAL)
                where = f"{me}->{dst} cut={sorted(map(sorted, wan.cut))} ({replay_hint(seed)})"
                if nx.has_path(truth, me, dst):
                    assert path is not None, f"no route {where}"
                if path is not None:
                    hops = {frozenset(h) for h in itertools.pairwise(path)}
                    assert not hops & wan.cut, f"route {path} crosses a cut link: {where}"
