"""The demo's DWCP agents chapter: one ``novacron agent`` per region (the command the
operator's DaemonSet runs), inside the region's network namespace, measuring the demo's WAN.

It checks the RTT matrix the agents measure against the WAN's configured delays, then cuts
one link (both directions between two regions; every other link stays up) and times how long
the agents take to move the traffic between those two regions onto a path through a third.

Tolerance: the WAN delays every packet by exactly RTT/2 each way (netem or the userspace
WAN), and anything else on the way - a busy host, the userspace WAN's own forwarding, the
agents' event loops - only adds time. The agents report the least RTT of their last 16
probes (a BBR-style min filter), so what remains is the path's own round trip; 10 % of the
smallest pair (64 ms) is 6.4 ms, far more than a quiet forwarding adds and far less than a
missing delay (0 ms) or a pair's delay swapped for another's (>= 2 ms apart in the matrix).
The reroute bound is the issue's 1 s: detection takes ``down_after`` (3) lost probes, each
declared lost 1.5 RTOs after it was sent (clamped to 150-600 ms), then the switch to the
precomputed backup is immediate. The time comes from the agent's own reroute event
(CLOCK_MONOTONIC, one clock for every process of the machine), not from our polling.
"""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING

from novacron_core.demo.procs import _die_with_parent
from novacron_core.runtime.agent.fleet import AgentFleet, FleetMember, MatrixCheck

if TYPE_CHECKING:
    from novacron_core.demo.story import Story

TOLERANCE = 0.10  # relative, per measured pair (see above)
REROUTE_BOUND_S = 1.0
MATRIX_WAIT_S = 6.0  # for every pair's min filter to hold real samples
AGENT_COMMAND = (sys.executable, "-m", "novacron_core.cli", "agent")  # `novacron agent`


def fleet_for(story: Story) -> AgentFleet:
    net = story.net
    assert net is not None
    assert net.plan is not None
    plan = net.plan
    # each agent on its region's first node address (the nodes use other ports), as the
    # DaemonSet puts an agent on each Kubernetes node's address
    members = [FleetMember(r, plan.node_addr(i, 0)) for i, r in enumerate(net.regions)]
    return AgentFleet(
        members, exec_argv=net.exec_argv, command=AGENT_COMMAND, preexec_fn=_die_with_parent
    )


def wait_matrix(
    fleet: AgentFleet, expected: dict[tuple[str, str], float], timeout: float
) -> list[MatrixCheck]:
    """The agents' matrix once every pair is within the tolerance, or as it is when the time
    is up (a pair's min filter only improves with more samples; it never passes wrongly: a
    sample is a real round trip, and none can be shorter than the delays on the way)."""
    deadline = time.monotonic() + timeout
    while True:
        checks = fleet.check_matrix(expected, TOLERANCE)
        if (checks and all(c.ok for c in checks)) or time.monotonic() > deadline:
            return checks
        time.sleep(0.25)


def run_chapter(story: Story) -> None:
    """Start the agents, check their matrix, cut one link and time the reroute, stop them."""
    net = story.net
    story.say(
        "\n[bold]DWCP agents: one `novacron agent` per region measures the WAN and routes "
        "around a cut link[/bold]"
    )
    if net is None or not net.delays:
        story.say(
            "   skipped: the network does not delay here (the nodes do, in their transport), "
            "so there is no WAN for the agents to measure"
        )
        return
    expected = dict(net.rtt_ms)
    fleet = fleet_for(story)
    t0 = time.monotonic()
    try:
        fleet.start()
        converged = fleet.wait_converged(timeout=15)
        story.expect(converged, "every agent has a route to every other region")
        checks = wait_matrix(fleet, expected, MATRIX_WAIT_S)
        story.say(
            f"   {len(fleet.members)} agents started, converged and measured in "
            f"{time.monotonic() - t0:.1f}s; the RTT each measured (least of its last 16 "
            "probes) vs the WAN's:"
        )
        for c in checks:
            got = "-" if c.measured_ms is None else f"{c.measured_ms:6.1f}"
            story.say(f"     {c.pair[0]:>14} → {c.pair[1]:<14} {got} ms  (WAN {c.expected_ms:.0f})")
        worst = max(
            (abs((c.measured_ms or 0.0) - c.expected_ms) / c.expected_ms for c in checks),
            default=0.0,
        )
        story.figures["agents_rtt_error_pct_max"] = 100 * worst
        story.expect(
            bool(checks) and all(c.ok for c in checks),
            f"the agents' RTT matrix within {TOLERANCE:.0%} of the WAN's",
        )
        regions = net.regions
        if len(regions) < 3:
            story.say("   (a reroute needs a third region to go through: skipped with 2)")
        else:
            _cut_and_reroute(story, fleet, regions[0], regions[1], regions[2])
    finally:
        codes = fleet.stop()
    story.expect(all(c == 0 for c in codes.values()), "the agents stop cleanly on SIGTERM")
    story.say(f"   (this chapter took {time.monotonic() - t0:.1f}s)")


def _cut_and_reroute(story: Story, fleet: AgentFleet, a: str, b: str, via: str) -> None:
    net = story.net
    assert net is not None
    before = fleet.route(a, b)
    story.say(f"   {a} → {b} goes {' → '.join(before or ['(none)'])}; cutting the {a}↔{b} link")
    cut_at = time.monotonic()
    net.cut_link(a, b)
    try:
        took = [
            fleet.wait_reroute(a, b, via=via, since=cut_at, timeout=5),
            fleet.wait_reroute(b, a, via=via, since=cut_at, timeout=5),
        ]
        after = fleet.route(a, b)
    finally:
        net.cut_link(a, b, cut=False)
    if all(t is not None for t in took):
        slowest = max(t for t in took if t is not None)
        story.figures["agents_reroute_s"] = slowest
        story.say(
            f"   both ends moved onto {' → '.join(after or [])} "
            f"{slowest * 1000:.0f} ms after the cut ({a}: {took[0]:.3f}s, {b}: {took[1]:.3f}s)"
        )
    story.expect(
        all(t is not None and t <= REROUTE_BOUND_S for t in took),
        f"traffic between {a} and {b} rerouted through {via} within {REROUTE_BOUND_S:g}s",
    )
    story.say(f"   link {a}↔{b} restored")
