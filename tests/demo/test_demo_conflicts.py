"""The demo's conflict chapter: what it compares and prints (its run is part of
tests/demo/test_demo_story.py's whole story)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console

from novacron_core.demo.conflicts import address, chapter, lost_values, resolution_lines, same
from novacron_core.demo.federation import Layout
from novacron_core.demo.procs import Supervisor
from novacron_core.demo.story import Story

ENTRY = {
    "id": "c-1",
    "kinds": ["concurrent", "address"],
    "status": "resolved",
    "heads": [{"dot": "us-east1:5", "region": "us-east1"}, {"dot": "r3:2", "region": "r3"}],
    "fields": [
        {
            "path": "nics.eth0.address",
            "strategy": "merge",
            "value": {"ip": "10.1.0.7", "lease": [1, 0, "us-east1"]},
            "from": "us-east1:5",
            "overwritten": [{"value": {"ip": "10.3.0.9"}, "from": "r3:2"}],
            "why": "earlier lease",
        }
    ],
    "merged": {"lifecycle": ["us-east1:5", "r3:2"]},
}


def test_same_needs_every_view_equal_and_present() -> None:
    assert same([{"a": [1, 2]}, {"a": [1, 2]}])
    assert not same([{"a": 1}, {"a": 2}])
    assert not same([None, None])  # a node that does not answer is not agreement
    assert not same([])


def test_the_resolution_names_the_writes_the_strategy_and_what_was_overwritten() -> None:
    lines = resolution_lines(ENTRY)
    assert "us-east1:5 (us-east1), r3:2 (r3)" in lines[0]
    assert lines[1] == (
        "nics.eth0.address: merge kept 10.1.0.7 (leased by us-east1 at HLC 1.0) from "
        "us-east1:5, overwrote 10.3.0.9 from r3:2 (earlier lease)"
    )
    assert lines[2] == "lifecycle: merged without contest from us-east1:5, r3:2"
    assert lost_values(ENTRY, "nics.eth0.address") == [{"ip": "10.3.0.9"}]
    assert lost_values(ENTRY, "labels.x") == []


def test_the_address_is_read_from_the_named_nic() -> None:
    rec = {
        "nics": [{"name": "eth1", "address": {"ip": "b"}}, {"name": "eth0", "address": {"ip": "a"}}]
    }
    assert address(rec) == {"ip": "a"}
    assert address({"nics": []}) is None
    assert address(None) is None


@pytest.mark.slow
def test_the_chapter_on_two_real_regions_meets_its_expectations(tmp_path: Path) -> None:
    """The chapter itself, on 2 regions x 1 real node (the nodes' own link rules cut them):
    every expectation met, the resolution printed, `novacron conflicts list` shows it."""
    layout = Layout(2, 1, octet=97)
    if layout.busy_addresses():
        pytest.skip(f"127.97.x.x is in use: {layout.busy_addresses()}")
    buf = io.StringIO()
    with Supervisor(str(tmp_path / "data")) as sup:
        story = Story(sup, layout, Console(file=buf, width=200), 400)
        story.start()
        chapter(story)
    out = buf.getvalue()
    print(out)  # shown with -s, and on failure
    assert story.failures == [], out
    assert "nics.eth0.address: merge kept" in out, out
    assert "overwrote" in out, out
    assert f"Conflicts seen by {layout.regions[-1]}" in out, out
    assert story.figures["conflict_heal_ms"] > 0
