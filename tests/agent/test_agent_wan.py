"""One agent per region namespace across the injected WAN (the demo's userspace WAN with the
demo's 3-region matrix): the measured matrix within 10 % of the configured one, and a link
cut rerouted through the third region within 1 s (root only)."""

from __future__ import annotations

import time

import pytest

from novacron_core.runtime.agent.fleet import AgentFleet, FleetMember
from novacron_core.sim.topology import COCKROACH_DEMO_RTT_MS, Topology
from novacron_core.tunnels import lab
from tests.agent.wanlab import WanLab

pytestmark = pytest.mark.skipif(bool(lab.why_not()), reason=lab.why_not() or "ok")
REGIONS = Topology.three_regions().regions
HTTP = 7947


def test_agents_measure_the_injected_wan_and_reroute_a_cut_through_the_third_region():
    east, west, eu = REGIONS
    with WanLab(REGIONS, COCKROACH_DEMO_RTT_MS) as wan:
        members = [FleetMember(r, wan.addr(r), http_port=HTTP) for r in REGIONS]
        fleet = AgentFleet(members, exec_argv=wan.exec_argv, fetch=wan.fetch(HTTP))
        with fleet:
            assert fleet.wait_converged(timeout=15), "agents did not converge"
            time.sleep(1.5)  # a dozen samples per link for the smoothing
            checks = fleet.check_matrix(COCKROACH_DEMO_RTT_MS, tolerance=0.10)
            assert len(checks) == 6
            assert all(c.ok for c in checks), [
                (c.pair, c.measured_ms, c.expected_ms) for c in checks
            ]
            assert fleet.route(east, west) == [east, west]

            cut_at = time.monotonic()
            wan.cut_link(east, west)
            took_east = fleet.wait_reroute(east, west, via=eu, since=cut_at)
            took_west = fleet.wait_reroute(west, east, via=eu, since=cut_at)
            assert took_east is not None
            assert took_west is not None
            assert max(took_east, took_west) < 1.0, (took_east, took_west)
            assert fleet.route(east, west) == [east, eu, west]
            # the third region hears of the cut from the others' adverts
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline:
                links = fleet.get(eu, "/v1/topology")["links"]
                if any(x["a"] == east and x["b"] == west and not x["up"] for x in links):
                    break
                time.sleep(0.1)
            else:
                pytest.fail("europe-west1 never learned that east-west is down")

            wan.cut_link(east, west, cut=False)  # healed: back to the direct path
            deadline = time.monotonic() + 5
            while fleet.route(east, west) != [east, west] and time.monotonic() < deadline:
                time.sleep(0.1)
            assert fleet.route(east, west) == [east, west]
        assert all(code == 0 for code in fleet.stop().values())
