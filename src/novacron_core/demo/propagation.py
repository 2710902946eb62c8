"""How fast what a home region commits reaches the others (issue 15, item 9): per region pair
the time until a node there serves the new version, against the link's one-way latency, and
the federation messages every node sent per update."""

from __future__ import annotations

import statistics
import threading
import time
from collections import Counter
from typing import TYPE_CHECKING

from novacron_core.demo.federation import (
    NodeSpec,
    fed_record,
    get_json,
    write,
)
from novacron_core.federation.netem import demo_rtt

if TYPE_CHECKING:
    from novacron_core.demo.story import Story


def seen_in_regions(
    story: Story, home: str, vm: str, version: int, acked: float, timeout: float = 15.0
) -> dict[str, float]:
    """Seconds from ``acked`` (the write's answer) until a node of each other region
    serves ``vm`` at ``version`` or later from its federation replica; each region is
    polled every 2 ms by its own thread, so the figure is not a poll interval."""
    seen: dict[str, float] = {}
    lock = threading.Lock()

    def poll(region: str, node: NodeSpec) -> None:
        deadline = acked + timeout
        while time.monotonic() < deadline:
            rec = fed_record(node, vm)
            if rec is not None and int(rec.get("version", 0)) >= version:
                with lock:
                    seen[region] = time.monotonic() - acked
                return
            time.sleep(0.002)

    threads = [
        threading.Thread(target=poll, args=(o, story.fed_node(o)), daemon=True)
        for o in story.layout.regions
        if o != home
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout + 1)
    missing = [o for o in story.layout.regions if o != home and o not in seen]
    if missing:
        raise TimeoutError(f"{vm} v{version} not readable in {', '.join(missing)} in time")
    return seen


def measure(story: Story, rounds: int = 5) -> None:
    """Power each region's VM off and on ``rounds`` times; per region pair the time
    until the other region serves the new version, against the link's one-way latency,
    and the federation messages every node sent per update."""
    lay = story.layout
    story.say(
        f"   propagation of {rounds} updates per region "
        "(commit → eager push to one node per region → relayed in that region):"
    )
    before = counters(story)
    samples: dict[tuple[str, str], list[float]] = {}
    for i in range(rounds):
        for r in lay.regions:
            state = "off" if i % 2 == 0 else "on"
            rec = write(story.live(r), "POST", f"/v1/vms/web-{r}/power", {"state": state})
            acked = time.monotonic()
            for o, t in seen_in_regions(story, r, f"web-{r}", rec["version"], acked).items():
                samples.setdefault(tuple(sorted((r, o))), []).append(t)  # type: ignore[arg-type]
    after = counters(story)
    rtt = demo_rtt(lay.regions)
    worst_p50 = worst_max = 0.0
    for (a, b), ts in sorted(samples.items()):
        one_way = rtt.get((a, b), rtt.get((b, a), 0.0)) / 2
        p50, top = 1000 * statistics.median(ts), 1000 * max(ts)
        worst_p50, worst_max = max(worst_p50, p50 - one_way), max(worst_max, top - one_way)
        story.say(
            f"     {a}↔{b}: p50 {p50:.0f} ms, max {top:.0f} ms over {len(ts)} updates "
            f"(one-way {one_way:.0f} ms: +{p50 - one_way:.0f} / +{top - one_way:.0f})"
        )
        story.expect(
            p50 <= one_way + 30 and top <= one_way + 80,
            f"{a}↔{b} p50 ≤ one-way + 30 ms and max ≤ one-way + 80 ms",
        )
    all_ts = [t for ts in samples.values() for t in ts]
    story.figures["propagation_ms_p50"] = 1000 * statistics.median(all_ts)
    story.figures["propagation_ms_max"] = 1000 * max(all_ts)
    story.figures["propagation_over_one_way_ms_p50"] = worst_p50
    story.figures["propagation_over_one_way_ms_max"] = worst_max
    updates = after[1] - before[1]
    if updates > 0:
        per = {k: (after[2].get(k, 0) - before[2].get(k, 0)) / updates for k in after[2]}
        total = sum(per.values())
        story.figures["federation_messages_per_update"] = total
        story.say(
            f"   federation messages per update: {total:.1f} "
            f"({updates} updates by every region's leader, heartbeat marks included; "
            + ", ".join(f"{k} {v:.1f}" for k, v in sorted(per.items()) if v >= 0.05)
            + f"; {len(lay.nodes)} replicas)"
        )


def counters(story: Story) -> tuple[float, int, dict[str, int]]:
    """(when, updates published, federation messages sent by type) over every node."""
    published, sent = 0, Counter[str]()
    for n in story.layout.nodes:
        st = get_json(n.url + "/v1/federation/status") if story.sup.procs[n.name].running else None
        if isinstance(st, dict):
            published += int(st.get("published", 0)) + int(st.get("heartbeats", 0))
            sent.update(st.get("messages_sent") or {})
    return time.monotonic(), published, dict(sent)
