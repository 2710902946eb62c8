"""Real editing sessions replayed into the RGA must end with exactly the recorded document."""

from __future__ import annotations

import pytest

from novacron_core.sync.crdt import RGA, Crdt, RgaDelta
from tests.sync.traces import TRACES, load

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not TRACES.is_dir(), reason=f"editing traces not present at {TRACES}"),
]


@pytest.mark.parametrize("name", ["automerge-paper", "seph-blog1"])
def test_sequential_trace_replays_to_end_content(name: str) -> None:
    trace = load(name)
    doc = RGA("author")
    mirror = RGA("reader")  # receives every delta, batched per txn, as a peer would
    for txn in trace["txns"]:
        batch = RgaDelta()
        for pos, n_del, text in txn["patches"]:
            if n_del:
                batch.merge(doc.delete(pos, n_del))
            if text:
                batch.merge(doc.insert(pos, text))
        mirror.merge(batch)
    assert doc.text() == trace["endContent"]
    assert mirror.text() == trace["endContent"]


def test_concurrent_trace_converges_on_every_agent() -> None:
    trace = load("friendsforever")
    txns = trace["txns"]
    agents = [RGA(f"agent{i}") for i in range(trace["numAgents"])]
    seen: list[set[int]] = [set() for _ in agents]
    deltas: list[Crdt] = []
    for t in txns:
        a = t["agent"]
        _catch_up(agents[a], seen[a], t["parents"], txns, deltas)
        batch = RgaDelta()
        for pos, n_del, text in t["patches"]:
            if n_del:
                batch.merge(agents[a].delete(pos, n_del))
            if text:
                batch.merge(agents[a].insert(pos, text))
        deltas.append(batch)
        seen[a].add(len(deltas) - 1)
    everything = range(len(txns))
    for a, replica in enumerate(agents):
        _catch_up(replica, seen[a], list(everything), txns, deltas)
        assert replica.text() == trace["endContent"], f"agent {a} diverged"


def _catch_up(
    replica: RGA, seen: set[int], parents: list[int], txns: list[dict], deltas: list[Crdt]
) -> None:
    """Merge every txn in the causal past of ``parents`` that the replica has not seen."""
    missing: set[int] = set()
    stack = [p for p in parents if p not in seen]
    while stack:
        i = stack.pop()
        if i in missing or i in seen:
            continue
        missing.add(i)
        stack.extend(p for p in txns[i]["parents"] if p not in seen)
    for i in sorted(missing):
        replica.merge(deltas[i])
        seen.add(i)
