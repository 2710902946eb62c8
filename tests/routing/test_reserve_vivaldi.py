"""Reservations against a sequential reference model; Vivaldi against known RTT matrices."""

from __future__ import annotations

import itertools
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from novacron_core.routing.qos import QoS
from novacron_core.routing.reserve import Reservations
from novacron_core.routing.topology import Topology
from novacron_core.routing.vivaldi import Coordinate, Coordinates, VivaldiClient, VivaldiSim
from novacron_core.sim.topology import FIVE_REGION_RTT_MS

# the documented nested limits, written out independently of qos.py
SHARE = {"critical": 1.0, "high": 0.8, "medium": 0.6, "low": 0.4, "best-effort": 0.0}
RANK = {"critical": 0, "high": 1, "medium": 2, "low": 3, "best-effort": 4}
PATHS = [("a", "b"), ("a", "c", "b"), ("a", "c")]
CAP = {("a", "b"): 100.0, ("a", "c"): 60.0, ("b", "c"): 40.0}


def _key(e: tuple[str, str]) -> tuple[str, ...]:
    return tuple(sorted(e))


def _model_fits(flows: dict[str, tuple[tuple[str, ...], float, str]], path, mbps, q) -> bool:
    """Reference: after adding, for every link and every class c at least as important as q,
    what classes c and less important hold on that link stays within share(c) * capacity."""
    if mbps <= 0 or SHARE[q] == 0:
        return False
    trial = [*flows.values(), (path, mbps, q)]
    for link, cap in CAP.items():
        for c in SHARE:
            if RANK[c] > RANK[q]:
                continue
            held = sum(
                m
                for p, m, cls in trial
                if RANK[cls] >= RANK[c]
                and link in {tuple(sorted(e)) for e in itertools.pairwise(p)}
            )
            if held > SHARE[c] * cap + 1e-9:
                return False
    return True


ops = st.lists(
    st.one_of(
        st.tuples(
            st.just("admit"),
            st.sampled_from(["f1", "f2", "f3", "f4", "f5"]),
            st.lists(st.sampled_from(range(len(PATHS))), min_size=1, max_size=3),
            st.sampled_from([5.0, 10.0, 20.0, 35.0]),
            st.sampled_from(list(SHARE)),
        ),
        st.tuples(st.just("release"), st.sampled_from(["f1", "f2", "f3", "f4", "f5"])),
    ),
    max_size=30,
)


@settings(max_examples=200, deadline=None)
@given(ops)
def test_admission_matches_the_reference_model(steps):
    topo = Topology()
    for (a, b), cap in CAP.items():
        topo.add_link(a, b, 1.0, bandwidth_mbps=cap)
    res = Reservations(topo)
    model: dict[str, tuple[tuple[str, ...], float, str]] = {}
    for step in steps:
        if step[0] == "release":
            assert res.release(step[1]) == (model.pop(step[1], None) is not None)
            continue
        _, flow, idx, mbps, q = step
        cands = [PATHS[i] for i in idx]
        old = model.pop(flow, None)
        want = next((p for p in cands if _model_fits(model, p, mbps, q)), None)
        got = res.admit(flow, cands, mbps, QoS(q))
        if want is None:
            assert not got.ok
            assert got.reason
            if old is not None:
                model[flow] = old  # a refused re-admission keeps the old reservation
        else:
            assert got.ok, got.reason
            assert got.path == want
            model[flow] = (want, mbps, q)
        assert set(res.flows) == set(model)
    for a, b in CAP:
        want_total = sum(
            m
            for p, m, _ in model.values()
            if (a, b) in {tuple(sorted(e)) for e in itertools.pairwise(p)}
        )
        assert res.reserved(a, b) == pytest.approx(want_total)


def test_refusal_names_the_link_and_the_limit_and_reserves_nothing():
    topo = Topology()
    topo.add_link("a", "b", 1.0, bandwidth_mbps=100)
    res = Reservations(topo)
    assert res.admit("bulk", [("a", "b")], 40, QoS.LOW).ok
    no = res.admit("more", [("a", "b")], 1, QoS.LOW)
    assert not no.ok
    assert no.link == ("a", "b")
    assert "low limit of 40" in no.reason
    assert res.reserved("a", "b") == 40
    assert res.admit("raft", [("a", "b")], 60, QoS.CRITICAL).ok  # low never eats critical room
    assert not res.admit("be", [("a", "b")], 1, QoS.BEST_EFFORT).ok


def test_link_down_moves_reservations_to_backups_important_first():
    topo = Topology()
    for a, b in [("a", "b"), ("a", "c"), ("c", "b")]:
        topo.add_link(a, b, 1.0, bandwidth_mbps=100)
    res = Reservations(topo)
    cands = [("a", "b"), ("a", "c", "b")]
    assert res.admit("low", cands, 30, QoS.LOW).ok
    assert res.admit("crit", cands, 60, QoS.CRITICAL).ok
    assert res.admit("other", [("a", "c", "b")], 30, QoS.HIGH).ok
    assert res.flows["crit"].path == res.flows["low"].path == ("a", "b")
    topo.set_up("a", "b", False, now=1.0)
    moved = res.on_link_down("a", "b", lambda r: cands)
    by_flow = {m.flow: m for m in moved}
    assert by_flow["crit"].ok
    assert by_flow["crit"].path == ("a", "c", "b")
    assert not by_flow["low"].ok  # 30 + 60 + 30 > 100 on the backup: the low one goes
    assert set(res.flows) == {"crit", "other"}


def test_vivaldi_median_error_on_the_five_region_matrix_with_jitter_is_within_the_paper():
    errors = []
    for seed in range(3):
        sim = VivaldiSim(dict(FIVE_REGION_RTT_MS), jitter=0.1, seed=seed)
        errors.append(sim.median_relative_error(sim.run(rounds=150)))
    assert max(errors) < 0.15, errors


def test_vivaldi_nearest_picks_the_truly_nearest_region():
    sim = VivaldiSim(dict(FIVE_REGION_RTT_MS), jitter=0.05, seed=7)
    coords = sim.run(rounds=200)
    names = sorted(coords)
    agree = 0
    for me in names:
        others = [n for n in names if n != me]
        truth = min(others, key=lambda o: sim.true_rtt(me, o))
        agree += coords[me].nearest(others) == truth
    assert agree >= 4, f"nearest agreed for {agree} of 5 regions"


def test_vivaldi_is_deterministic_and_rejects_bad_samples():
    a = VivaldiClient(rng=random.Random(1))
    b = VivaldiClient(rng=random.Random(1))
    other = Coordinate((0.01,) + (0.0,) * 7, 0.5, 0.0, 1e-5)
    for c in (a, b):
        for rtt in (30.0, 32.0, 29.0):
            c.update("p", other, rtt)
    assert a.coord == b.coord
    with pytest.raises(ValueError, match="rtt_ms"):
        a.update("p", other, -1.0)
    with pytest.raises(ValueError, match="dimensionality"):
        a.update("p", Coordinate((0.0,), 1.0, 0.0, 1e-5), 10.0)
    view = Coordinates("me")
    assert view.nearest(["x", "y"]) == "x"  # nothing known: the given order
    assert view.rtt_ms("x") is None


def test_region_coordinates_serve_the_gateways_protocol():
    from novacron_core.routing.vivaldi import RegionCoordinates

    sim = VivaldiSim(dict(FIVE_REGION_RTT_MS), jitter=0.05, seed=3)
    coords = sim.run(rounds=200)
    me = coords["us-east1"]
    body = {**me.as_dict(), "regions": {n: n for n in coords}}
    rc = RegionCoordinates.from_api(body)
    assert rc.rtt_ms("us-east1", "us-east1") == 0.0
    assert rc.rtt_ms("us-east1", "nowhere") is None
    est = rc.rtt_ms("us-west1", "europe-west1")
    assert est == pytest.approx(146.0, rel=0.25)
