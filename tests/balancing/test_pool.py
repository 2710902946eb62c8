"""The pool's decisions: locality with spill-over (overprovisioning 1.4), panic, strict
regions, leaders for writes, retries elsewhere, limits, affinity and draining."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from novacron_core.balancing import (
    BackendSpec,
    Balancer,
    CheckSpec,
    CircuitSpec,
    Distances,
    GeoPoint,
    Outcome,
    PickContext,
    PoolSpec,
    Refusal,
    Request,
    SlowStart,
    Verdict,
)
from novacron_core.balancing.pool import Choice

LOCATIONS = {
    "us-east1": GeoPoint(33.2, -80.0),
    "us-west1": GeoPoint(45.6, -121.2),
    "europe-west1": GeoPoint(50.4, 3.8),
}


def balancer(per_region: int = 3, **kw: object) -> Balancer:
    spec = PoolSpec(**{"health": CheckSpec(kind="none"), **kw})  # type: ignore[arg-type]
    b = Balancer(spec, "us-east1", Distances(LOCATIONS), random.Random(1))
    for r in LOCATIONS:
        b.set_members(
            0.0, r, [BackendSpec(f"{r}/n{i}", "127.0.0.1", 1000 + i, r) for i in range(per_region)]
        )
    return b


def take(b: Balancer, req: Request, now: float = 1.0) -> Choice:
    c = b.acquire(now, req)
    assert isinstance(c, Choice), c
    return c


def served(b: Balancer, n: int, req: Request | None = None) -> Counter[str]:
    out = Counter[str]()
    for _ in range(n):
        c = take(b, req or Request())
        out[c.region] += 1
        b.release(1.0, c, Outcome.SUCCESS, 0.001)
    return out


def mark_down(b: Balancer, *ids: str) -> None:
    for i in ids:
        b.by_id[i].healthy = False
        b._touch(b.by_id[i])


def envoy_loads(healthy: list[float], opf: float = 1.4) -> list[float]:
    """Envoy's documented priority-load computation, as a reference model."""
    health = [min(100.0, opf * 100.0 * h) for h in healthy]
    total = min(100.0, sum(health))
    if total == 0:
        return [100.0] + [0.0] * (len(healthy) - 1)
    out, left = [], 100.0
    for h in health:
        out.append(min(left, h * 100.0 / total))
        left -= out[-1]
    return out


def test_all_traffic_stays_home_while_home_is_healthy() -> None:
    assert served(balancer(), 500) == {"us-east1": 500}


def test_spill_over_follows_the_overprovisioning_factor() -> None:
    b = balancer()
    mark_down(b, "us-east1/n0", "us-east1/n1")  # 1/3 healthy: 46.7% stays, the rest spills
    counts = served(b, 6000)
    assert counts["us-east1"] / 6000 == pytest.approx(1.4 / 3, abs=0.03)
    # the spill goes to the nearest other region (us-west1), not across the ocean
    assert counts["us-west1"] / 6000 == pytest.approx(1 - 1.4 / 3, abs=0.03)
    assert counts["europe-west1"] == 0


def test_three_quarters_healthy_still_takes_everything() -> None:
    b = balancer(per_region=4)
    mark_down(b, "us-east1/n0")  # 75% x 1.4 > 100%
    assert served(b, 300) == {"us-east1": 300}
    mark_down(b, "us-east1/n1")  # 50% x 1.4 = 70%
    assert served(b, 4000)["us-east1"] / 4000 == pytest.approx(0.7, abs=0.03)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.integers(0, 4), min_size=3, max_size=3))
def test_priority_loads_match_envoys_model(healthy: list[int]) -> None:
    b = balancer(per_region=4)
    for r, h in zip(LOCATIONS, healthy, strict=True):
        mark_down(b, *(f"{r}/n{i}" for i in range(4 - h)))
    levels = b._levels(Request())
    loads, panic = b.priority_loads(levels)
    shares = {g.region: len(g.available) / len(g.backends) for g in levels}
    want = envoy_loads([shares[g.region] for g in levels])
    assert loads == pytest.approx(want)
    assert sum(loads) == pytest.approx(100.0)
    assert panic == (min(100.0, sum(min(100.0, 140.0 * s) for s in shares.values())) < 50.0)


def checked(per_region: int = 3) -> Balancer:
    """A balancer with active checks, every backend healthy after its first probe."""
    b = balancer(per_region, health=CheckSpec(interval_s=1.0, jitter=0.0))
    for bk in b.probes_due(0.0):
        b.probe_result(0.0, bk.id, Verdict.OK)
    return b


def test_panic_uses_unhealthy_backends_but_never_known_down_ones() -> None:
    b = checked()
    for r in LOCATIONS:
        for i in range(3):
            b.probe_result(1.0, f"{r}/n{i}", Verdict.FAILED)
            b.probe_result(1.1, f"{r}/n{i}", Verdict.FAILED)  # the checks say: all down
    b.probe_result(1.2, "us-east1/n2", Verdict.REFUSED)  # ...and n2 refuses connections
    got = Counter(take(b, Request()).backend.id for _ in range(60))
    assert set(got) == {"us-east1/n0", "us-east1/n1"}
    assert b.panics == 60


def test_strict_requests_never_leave_their_region() -> None:
    b = checked()
    for i in range(3):
        b.probe_result(1.0, f"europe-west1/n{i}", Verdict.FAILED)
        b.probe_result(1.1, f"europe-west1/n{i}", Verdict.FAILED)
    req = Request(region="europe-west1", strict=True)
    # everything down there: panic within the region, never another region
    assert {take(b, req).region for _ in range(20)} == {"europe-west1"}
    for i in range(3):
        b.probe_result(1.2, f"europe-west1/n{i}", Verdict.REFUSED)
    refused = b.acquire(1.3, req)
    assert isinstance(refused, Refusal)
    assert "europe-west1" in refused.reason


def test_client_location_and_region_hint_choose_the_home() -> None:
    b = balancer()
    paris = Request(ctx=PickContext(client_location=GeoPoint(48.9, 2.35)))
    assert served(b, 50, paris) == {"europe-west1": 50}
    assert served(b, 50, Request(region="us-west1")) == {"us-west1": 50}


def test_writes_go_to_the_leader_when_known_and_available() -> None:
    b = balancer()
    b.set_leader("us-east1", "us-east1/n2")
    write = Request(write=True)
    assert {take(b, write).backend.id for _ in range(10)} == {"us-east1/n2"}
    # retried elsewhere after the leader failed it
    retry = Request(write=True, exclude=frozenset({"us-east1/n2"}), retry=True)
    assert take(b, retry).backend.id in {"us-east1/n0", "us-east1/n1"}
    reads = {take(b, Request()).backend.id for _ in range(60)}
    assert len(reads) == 3


def test_a_retry_never_returns_to_a_backend_it_tried() -> None:
    b = balancer(per_region=2)
    tried: set[str] = set()
    for _ in range(6):
        c = take(b, Request(exclude=frozenset(tried), retry=bool(tried)))
        assert c.backend.id not in tried
        tried.add(c.backend.id)
        b.release(1.0, c, Outcome.GATEWAY_FAILURE, 0.0)
    assert isinstance(b.acquire(1.0, Request(exclude=frozenset(tried), retry=True)), Refusal)


def test_limits_refuse_with_retry_after_and_free_up_on_release() -> None:
    b = balancer(per_region=1, circuit=CircuitSpec(max_requests=2, max_retries=0))
    strict = Request(region="us-east1", strict=True)
    first, second = take(b, strict), take(b, strict)
    refusal = b.acquire(1.0, strict)
    assert isinstance(refusal, Refusal)
    assert refusal.retry_after_s > 0
    assert "in flight" in refusal.reason
    # a non-strict request spills to the next region instead of being refused
    assert take(b, Request()).region == "us-west1"
    b.release(1.0, first, Outcome.SUCCESS, 0.01)
    assert take(b, strict).region == "us-east1"
    assert isinstance(b.acquire(1.0, Request(region="us-west1", strict=True, retry=True)), Refusal)
    b.release(1.0, second, Outcome.SUCCESS, 0.01)


def test_refused_connections_eject_and_the_backend_returns_after_the_ejection() -> None:
    b = balancer(per_region=3, health=CheckSpec(interval_s=1.0, jitter=0.0))
    for bk in b.probes_due(0.0):
        b.probe_result(0.0, bk.id, Verdict.OK)
    c = take(b, Request(region="us-east1", strict=True, write=True))
    b.release(1.0, c, Outcome.REFUSED, 0.0)
    dead = c.backend.id
    assert all(take(b, Request()).backend.id != dead for _ in range(50))
    assert b.by_id[dead].ejected_until == pytest.approx(6.0)
    # it is probed (faster while down), and once it answers again and the ejection is
    # over it takes traffic again, slowly at first
    for t in (1.5, 2.0):
        for bk in b.probes_due(t):
            b.probe_result(t, bk.id, Verdict.OK)
    b.on_tick(6.0)
    assert b.by_id[dead].healthy
    assert b.by_id[dead].since == 6.0


def test_breaker_trips_on_a_flapping_backend() -> None:
    b = balancer(per_region=2, circuit=CircuitSpec(min_requests=4, window=4, open_s=3.0))
    strict = Request(region="us-east1", strict=True)
    bad = "us-east1/n0"
    for _ in range(40):
        c = take(b, strict)
        ok = c.backend.id != bad or b.rng.random() < 0.5
        b.release(1.0, c, Outcome.SUCCESS if ok else Outcome.SERVER_ERROR, 0.01)
    assert b.breakers[bad].opened >= 1
    assert all(take(b, strict).backend.id != bad for _ in range(20))
    b.on_tick(10.0)  # half-open: one trial at a time
    trial = [take(b, strict) for _ in range(20)]
    assert sum(c.backend.id == bad for c in trial) == 1


@pytest.mark.parametrize("mode", ["ring", "maglev"])
def test_affinity_keeps_a_key_on_its_backend_and_moves_few_keys(mode: str) -> None:
    b = balancer(per_region=4, affinity=mode)
    keys = [f"client-{i}".encode() for i in range(400)]

    def where(k: bytes) -> str:
        c = take(b, Request(affinity_key=k))
        b.release(1.0, c, Outcome.SUCCESS, 0.001)
        return c.backend.id

    first = {k: where(k) for k in keys}
    assert len(set(first.values())) == 4
    assert {k: where(k) for k in keys} == first
    mark_down(b, "us-east1/n3")
    after = {k: where(k) for k in keys}
    moved = [k for k in keys if after[k] != first[k]]
    assert all(after[k] != "us-east1/n3" for k in keys)
    extra = [k for k in moved if first[k] != "us-east1/n3"]
    # a ring moves only the lost backend's keys; Maglev a few more (M = 4099 here)
    assert len(extra) <= (0 if mode == "ring" else 0.03 * len(keys))


def test_draining_takes_no_new_requests_and_goes_when_the_last_one_ends() -> None:
    b = balancer(per_region=2)
    strict = Request(region="us-east1", strict=True)
    inflight = [take(b, strict) for _ in range(4)]
    leaving = "us-east1/n1"
    b.set_members(2.0, "us-east1", [BackendSpec("us-east1/n0", "127.0.0.1", 1000, "us-east1")])
    assert all(take(b, strict).backend.id == "us-east1/n0" for _ in range(10))
    assert b.take_gone() == []
    for c in inflight:
        b.release(3.0, c, Outcome.SUCCESS, 0.01)
    gone = b.take_gone()
    assert [(g.backend.id, g.aborted) for g in gone] == [(leaving, False)]
    assert leaving not in b.by_id


def test_a_drain_deadline_cuts_off_what_is_still_running() -> None:
    b = balancer(per_region=2, drain_timeout_s=5.0)
    strict = Request(region="us-east1", strict=True)
    stuck = [c for c in (take(b, strict) for _ in range(4)) if c.backend.id == "us-east1/n1"]
    b.set_members(2.0, "us-east1", [BackendSpec("us-east1/n0", "127.0.0.1", 1000, "us-east1")])
    assert b.on_tick(3.0) == 7.0
    b.on_tick(7.0)
    gone = b.take_gone()
    assert [(g.backend.id, g.aborted, g.in_flight) for g in gone] == [
        ("us-east1/n1", True, len(stuck))
    ]
    for c in stuck:
        b.release(8.0, c, Outcome.GATEWAY_FAILURE, 0.0)  # late release is harmless


def test_a_returning_member_stops_draining() -> None:
    b = balancer(per_region=2)
    spec0 = BackendSpec("us-east1/n0", "127.0.0.1", 1000, "us-east1")
    spec1 = BackendSpec("us-east1/n1", "127.0.0.1", 1001, "us-east1")
    c = take(b, Request(region="us-east1", strict=True, write=True))
    b.set_members(1.0, "us-east1", [spec0] if c.backend.id == spec1.id else [spec1])
    assert c.backend.draining
    b.set_members(1.5, "us-east1", [spec0, spec1])
    assert not c.backend.draining


def test_slow_start_after_recovery_ramps_the_share() -> None:
    b = balancer(
        per_region=2,
        algorithm="weighted_round_robin",
        slow_start=SlowStart(window_s=10.0, min_weight=0.1),
    )
    n1 = b.by_id["us-east1/n1"]
    n1.since = 100.0  # just back
    strict = Request(region="us-east1", strict=True)
    got = Counter(b.acquire(101.0, strict).backend.id for _ in range(110))  # type: ignore[union-attr]
    assert got == {"us-east1/n0": 100, "us-east1/n1": 10}


def test_release_twice_is_a_bug() -> None:
    b = balancer()
    c = take(b, Request())
    b.release(1.0, c, Outcome.SUCCESS, 0.01)
    with pytest.raises(RuntimeError, match="twice"):
        b.release(1.0, c, Outcome.SUCCESS, 0.01)


def test_describe_reports_what_the_gateway_shows() -> None:
    b = balancer(per_region=1)
    c = take(b, Request())
    rows = {r["id"]: r for r in b.describe(2.0)}
    assert rows[c.backend.id]["active"] == 1
    assert rows[c.backend.id]["last_sent_monotonic"] == 1.0
    assert b.region_health()["us-east1"] == {"backends": 1, "available": 1}
