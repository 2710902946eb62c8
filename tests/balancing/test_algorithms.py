"""Each algorithm against what it is documented to do, on random pools."""

from __future__ import annotations

import math
import random
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from novacron_core.balancing import (
    Backend,
    Distances,
    GeoPoint,
    GeoProximity,
    IPHash,
    LeastConnections,
    LeastResponseTime,
    PickContext,
    PowerOfTwoChoices,
    RoundRobin,
    SlowStart,
    SmoothWeightedRoundRobin,
    StaticCoordinates,
    haversine_km,
)
from novacron_core.balancing.backend import NO_SLOW_START

CTX = PickContext()
weights = st.lists(st.integers(1, 20), min_size=1, max_size=8)
loads = st.lists(st.integers(0, 50), min_size=2, max_size=10)


def pool(ws: list[int]) -> list[Backend]:
    return [Backend(f"b{i}", "127.0.0.1", 9000 + i, weight=w) for i, w in enumerate(ws)]


def nginx_swrr(ws: list[int], picks: int) -> list[int]:
    """ngx_http_upstream_get_peer, transcribed (integers, first maximum wins)."""
    current = [0] * len(ws)
    out = []
    for _ in range(picks):
        best = -1
        for i, w in enumerate(ws):
            current[i] += w
            if best == -1 or current[i] > current[best]:
                best = i
        current[best] -= sum(ws)
        out.append(best)
    return out


@settings(max_examples=200, deadline=None)
@given(weights, st.integers(1, 3))
def test_smooth_weighted_round_robin_is_exact_over_every_cycle(ws: list[int], cycles: int) -> None:
    backends = pool(ws)
    algo = SmoothWeightedRoundRobin()
    total = sum(ws)
    got = [int(algo.pick(0.0, backends, CTX).id[1:]) for _ in range(cycles * total)]
    assert got == nginx_swrr(ws, cycles * total)
    for c in range(cycles):
        assert Counter(got[c * total : (c + 1) * total]) == dict(enumerate(ws))


def test_smooth_weighted_round_robin_matches_nginx_sequence() -> None:
    backends = [Backend(n, "h", 1, weight=w) for n, w in (("a", 5), ("b", 1), ("c", 1))]
    algo = SmoothWeightedRoundRobin()
    assert "".join(algo.pick(0.0, backends, CTX).id for _ in range(7)) == "aabacaa"


@given(st.integers(1, 9), st.integers(1, 50))
def test_round_robin_takes_turns(n: int, picks: int) -> None:
    backends = pool([1] * n)
    algo = RoundRobin()
    got = [algo.pick(0.0, backends, CTX).id for _ in range(picks)]
    assert got == [backends[i % n].id for i in range(picks)]


@given(loads, weights)
def test_least_connections_picks_a_least_loaded_per_weight(
    active: list[int], ws: list[int]
) -> None:
    backends = pool((ws * len(active))[: len(active)])
    for b, a in zip(backends, active, strict=True):
        b.active = a
    best = min(b.active / b.weight for b in backends)
    algo = LeastConnections()
    for _ in range(len(backends)):
        got = algo.pick(0.0, backends, CTX)
        assert math.isclose(got.active / got.weight, best)


def test_least_connections_spreads_ties() -> None:
    backends = pool([1, 1, 1])
    algo = LeastConnections()
    assert {algo.pick(0.0, backends, CTX).id for _ in range(3)} == {"b0", "b1", "b2"}


@given(st.lists(st.tuples(st.floats(0.001, 2.0), st.integers(0, 20)), min_size=1, max_size=8))
def test_least_response_time_minimises_ewma_times_queue(stats: list[tuple[float, int]]) -> None:
    backends = pool([1] * len(stats))
    for b, (ewma, active) in zip(backends, stats, strict=True):
        b.ewma_s, b.active = ewma, active
    got = LeastResponseTime().pick(0.0, backends, CTX)
    best = min(b.ewma_s * (b.active + 1) for b in backends)
    assert math.isclose(got.ewma_s * (got.active + 1), best)


def test_least_response_time_tries_a_newcomer_as_average() -> None:
    a, b, new = pool([1, 1, 1])
    a.ewma_s, b.ewma_s = 0.010, 0.030  # average 20 ms
    a.active, b.active = 3, 0  # a costs 40, b 30, the newcomer 20
    assert LeastResponseTime().pick(0.0, [a, b, new], CTX) is new


def test_ewma_forgets_with_time_not_with_request_count() -> None:
    b = pool([1])[0]
    b.observe_latency(0.0, 0.100, tau_s=10.0)
    b.observe_latency(10.0, 0.000, tau_s=10.0)  # one tau later: 1 - 1/e of the new sample
    assert math.isclose(b.ewma_s, 0.100 / math.e, rel_tol=1e-9)


@settings(max_examples=100, deadline=None)
@given(loads, st.integers(0, 2**32))
def test_power_of_two_choices_never_picks_the_unique_worst(active: list[int], seed: int) -> None:
    backends = pool([1] * len(active))
    for b, a in zip(backends, active, strict=True):
        b.active = a
    algo = PowerOfTwoChoices(random.Random(seed))
    worst = max(active)
    for _ in range(20):
        got = algo.pick(0.0, backends, CTX)
        if active.count(worst) == 1:
            assert got.active != worst


def test_power_of_two_choices_is_uniform_under_equal_load() -> None:
    backends = pool([1] * 4)
    algo = PowerOfTwoChoices(random.Random(7))
    counts = Counter(algo.pick(0.0, backends, CTX).id for _ in range(8000))
    assert all(1700 < c < 2300 for c in counts.values()), counts


def test_power_of_two_choices_respects_weight() -> None:
    light, heavy = pool([1, 3])
    light.active = heavy.active = 2  # same queue: the heavier one costs a third
    algo = PowerOfTwoChoices(random.Random(1))
    assert all(algo.pick(0.0, [light, heavy], CTX) is heavy for _ in range(50))


def test_slow_start_ramps_weight_from_a_floor() -> None:
    slow = SlowStart(window_s=10.0, aggression=1.0, min_weight=0.1)
    assert [slow.factor(t) for t in (0.0, 5.0, 10.0, 60.0)] == [0.1, 0.5, 1.0, 1.0]
    gentle = SlowStart(window_s=10.0, aggression=2.0, min_weight=0.0)
    assert math.isclose(gentle.factor(2.5), 0.5)  # (0.25) ** (1/2)
    old, new = pool([1, 1])
    new.since = 9.0  # joined at 9 s; now is 10 s: 10% of its weight
    algo = SmoothWeightedRoundRobin(SlowStart(window_s=10.0))
    counts = Counter(algo.pick(10.0, [old, new], CTX).id for _ in range(110))
    assert counts == {"b0": 100, "b1": 10}
    assert NO_SLOW_START.factor(0.0) == 1.0


def test_ip_hash_keeps_clients_on_their_backend_when_another_fails() -> None:
    backends = pool([1] * 5)
    algo = IPHash()
    clients = [f"10.0.{i // 256}.{i % 256}" for i in range(1000)]
    before = {
        c: algo.pick(0.0, backends, PickContext(client_ip=c, group=backends)).id for c in clients
    }
    assert len(set(before.values())) == 5
    alive = [b for b in backends if b.id != "b2"]
    after = {c: algo.pick(0.0, alive, PickContext(client_ip=c, group=backends)).id for c in clients}
    assert all(after[c] == before[c] for c in clients if before[c] != "b2")
    assert all(after[c] != "b2" for c in clients)


def test_haversine_matches_known_distances() -> None:
    london, paris = GeoPoint(51.5074, -0.1278), GeoPoint(48.8566, 2.3522)
    assert 340 < haversine_km(london, paris) < 346  # 343.5 km great-circle
    assert haversine_km(london, london) == 0.0
    antipode = haversine_km(GeoPoint(0, 0), GeoPoint(0, 180))
    assert math.isclose(antipode, math.pi * 6371.0088, rel_tol=1e-9)


def test_geo_proximity_prefers_the_nearest_then_the_inner_algorithm() -> None:
    d = Distances({"eu": GeoPoint(50.1, 8.7), "us": GeoPoint(39.0, -77.5)})
    eu1, eu2, us = (
        Backend(n, "h", 1, region=r) for n, r in (("eu1", "eu"), ("eu2", "eu"), ("us", "us"))
    )
    algo = GeoProximity(d, RoundRobin())
    berlin = PickContext(client_location=GeoPoint(52.5, 13.4))
    assert {algo.pick(0.0, [eu1, eu2, us], berlin).id for _ in range(4)} == {"eu1", "eu2"}
    boston = PickContext(client_location=GeoPoint(42.4, -71.1))
    assert algo.pick(0.0, [eu1, us], boston) is us
    by_hint = PickContext(region_hint="us")
    assert algo.pick(0.0, [eu1, us], by_hint) is us
    assert algo.pick(0.0, [eu1], boston) is eu1  # nearest of what is available


def test_geo_proximity_uses_network_coordinates_when_known() -> None:
    # geography says eu is nearer to "mid", measured RTT says us: latency wins
    d = Distances(
        {"eu": GeoPoint(50.1, 8.7), "us": GeoPoint(39.0, -77.5), "mid": GeoPoint(45.0, -10.0)},
        StaticCoordinates({("mid", "eu"): 90.0, ("mid", "us"): 30.0}),
    )
    eu, us = Backend("eu", "h", 1, region="eu"), Backend("us", "h", 1, region="us")
    algo = GeoProximity(d, RoundRobin())
    assert algo.pick(0.0, [eu, us], PickContext(region_hint="mid")) is us
    assert d.rank("mid", None, ["eu", "us"]) == ["us", "eu"]
    assert Distances(
        {"eu": GeoPoint(50.1, 8.7), "us": GeoPoint(39.0, -77.5), "mid": GeoPoint(45.0, -10.0)}
    ).rank("mid", None, ["us", "eu"]) == ["eu", "us"]


def test_geo_point_parse_names_the_format() -> None:
    assert GeoPoint.parse("51.5,-0.12") == GeoPoint(51.5, -0.12)
    for bad in ("51.5", "north,south", "91,0"):
        with pytest.raises(ValueError, match="lat"):
            GeoPoint.parse(bad)


def test_power_of_two_choices_spreads_ties_between_two() -> None:
    backends = pool([1, 1])
    algo = PowerOfTwoChoices(random.Random(3))
    counts = Counter(algo.pick(0.0, backends, CTX).id for _ in range(2000))
    assert 850 < counts["b0"] < 1150, counts
