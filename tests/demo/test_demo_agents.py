"""The demo's agents chapter on its own: three `novacron agent` processes in the demo's region
namespaces, across the demo's WAN (netem or the userspace one), without the nodes."""

from __future__ import annotations

import io
import re

import pytest
from rich.console import Console

from novacron_core.demo import agents, netns
from novacron_core.demo.federation import Layout
from novacron_core.demo.procs import Supervisor
from novacron_core.demo.story import Story
from novacron_core.federation.netem import demo_rtt

REGIONS = ["us-east1", "us-west1", "europe-west1"]
PROBE = netns.probe()

pytestmark = pytest.mark.slow


@pytest.mark.skipif(
    not (PROBE.ok and PROBE.delay in ("netem", "wan")),
    reason=f"the network does not delay here: {PROBE.why or PROBE.delay}",
)
def test_agents_measure_the_wan_and_reroute_around_a_cut_link_within_a_second() -> None:
    buf = io.StringIO()
    out = Console(file=buf, width=160, no_color=True)
    with (
        netns.RegionNetwork(REGIONS, demo_rtt(REGIONS), PROBE.delay, 1) as net,
        Supervisor() as sup,
    ):
        story = Story(sup, Layout(3, 3), out, 400, "", net)
        agents.run_chapter(story)
        text = buf.getvalue()
        print(text)
        assert story.failures == [], text
        # every ordered pair printed with what it measured beside the WAN's figure
        rows = re.findall(r"(\S+) → (\S+)\s+([\d.]+) ms\s+\(WAN (\d+)\)", text)
        assert len(rows) == 6, text
        for a, b, got, want in rows:
            assert abs(float(got) - float(want)) <= agents.TOLERANCE * float(want), (a, b, text)
        assert "✓ the agents' RTT matrix within 10% of the WAN's" in text
        assert "rerouted through europe-west1 within 1s" in text
        assert "us-east1 → europe-west1 → us-west1" in text
        assert story.figures["agents_reroute_s"] <= agents.REROUTE_BOUND_S
        assert "✓ the agents stop cleanly on SIGTERM" in text
        # the cut was undone: no blackhole left in either namespace
        assert net.plan is not None
        for i in range(3):
            routes = netns._run(["ip", "-n", net.plan.ns(i), "route"])
            assert "blackhole" not in routes
