"""``novacron demo`` end to end: real processes, the whole story, nothing left behind."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from novacron_core.cli import main
from novacron_core.demo import netns
from tests.demo.harness import demo_pids, node_pids, output_until_interactive, start_demo

pytestmark = pytest.mark.slow
NETNS = netns.probe()  # what --network auto picks here: netns when this works


def _helper_pids(prefix: str) -> list[int]:
    """Pids of the network helpers (watchdog, userspace WAN) of the demo with this prefix."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        is_helper = b"novacron_core.demo.netns" in cmd or b"novacron_core.demo.wan" in cmd
        if is_helper and any(
            a == prefix.encode() or a.startswith(prefix.encode() + b"-") for a in cmd
        ):
            pids.append(int(entry.name))
    return pids


def _netns_left(pid: int) -> tuple[list[str], list[str]]:
    """Namespaces and links a demo with this pid left behind (its names start ncd<pid>)."""
    if not NETNS.ok:
        return [], []
    deadline = time.monotonic() + 5  # a deleted namespace's veth goes away asynchronously
    while True:
        left = netns.names_with(netns.run_prefix(pid))
        if left == ([], []) or time.monotonic() > deadline:
            return left
        time.sleep(0.05)


@pytest.fixture
def no_netns_leftovers() -> Iterator[list[int]]:
    """Demo pids to check (and, whatever the test did, clean up) after the test."""
    pids: list[int] = []
    yield pids
    left = {pid: _netns_left(pid) for pid in pids}
    for pid in pids:
        if NETNS.ok:
            netns.teardown(netns.run_prefix(pid))
    assert all(v == ([], []) for v in left.values()), f"left behind: {left}"


def _story(tmp_path: Path, octet: int, pids: list[int], *args: str) -> str:
    t0 = time.monotonic()
    proc = start_demo(tmp_path, octet, "--check", *args)
    pids.append(proc.pid)
    try:
        out, _ = proc.communicate(timeout=150)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=30)
    took = time.monotonic() - t0
    assert proc.returncode == 0, out
    assert "all expectations met" in out, out
    for figure in (
        "→ new leader",
        "→ next commit",
        "propagation",
        "partition healed",
        "→ served by",
    ):
        assert figure in out, out
    assert "✗" not in out, out
    assert "conflict healed → one record+audit" in out, out  # the conflict chapter ran
    assert node_pids(octet) == []
    assert node_pids(tmp_path / "tmp") == []
    assert list((tmp_path / "tmp").iterdir()) == [], "the demo left its temp dir behind"
    assert _netns_left(proc.pid) == ([], [])
    assert took < 120, f"the story took {took:.0f}s"
    return out


def test_the_story_meets_every_expectation_and_leaves_nothing_behind(
    tmp_path: Path, no_netns_leftovers: list[int]
) -> None:
    """--network auto: as root where namespaces and tc work (CI), the netns network."""
    out = _story(tmp_path, 77, no_netns_leftovers)
    if NETNS.ok:
        assert "network: netns" in out, out
        assert "drops every packet between them" in out, out
        assert "RTT measured between the namespaces" in out, out
        if NETNS.delay == "netem":
            assert "netns + tc netem (root)" in out, out
        else:
            assert NETNS.why in out, out  # says why there is no netem
        if NETNS.delay == "wan":
            assert "netns + userspace WAN" in out, out
            assert "the userspace WAN so far: forwarded" in out, out
        if NETNS.delay != "transport":  # the network delays: measured against the matrix
            assert "✓ RTT within 10% (or 5 ms) of the matrix" in out, out
            # one `novacron agent` per region measures the WAN and routes around a cut link
            assert "✓ the agents' RTT matrix within 10% of the WAN's" in out, out
            assert "rerouted through europe-west1 within 1s" in out, out
            assert "link cut → agents rerouted" in out, out
    else:
        assert f"network: in-transport delay ({NETNS.why})" in out, out


def test_the_story_with_in_transport_delay(tmp_path: Path, no_netns_leftovers: list[int]) -> None:
    out = _story(tmp_path, 79, no_netns_leftovers, "--network", "transport")
    assert "network: in-transport delay (--network transport)" in out, out
    assert "(the nodes' link rules drop)" in out, out
    assert "DWCP agents" in out, out
    assert "skipped: the network does not delay here" in out, out


@pytest.mark.skipif(not NETNS.ok, reason=f"--network netns is not possible here: {NETNS.why}")
def test_netns_story_then_kill_9_leaves_no_namespace_link_or_process(
    tmp_path: Path, no_netns_leftovers: list[int]
) -> None:
    """The story in namespaces (2 regions), each node inside its region's namespace; then the
    demo is killed with -9: its watchdog removes namespaces and links, the nodes die with it."""
    proc = start_demo(tmp_path, 80, "--interactive", "--regions", "2", "--network", "netns")
    no_netns_leftovers.append(proc.pid)
    prefix = netns.run_prefix(proc.pid)
    try:
        text = output_until_interactive(proc)
        assert "all expectations met" in text, text
        assert "✗" not in text, text
        assert "network: netns" in text, text
        spaces, links = netns.names_with(prefix)
        assert sorted(spaces) == [f"{prefix}-us-east1", f"{prefix}-us-west1"]
        assert f"{prefix}br" in links
        pids = node_pids(tmp_path / "tmp")
        assert len(pids) == 6
        for pid in pids:  # every node runs inside its region's namespace
            where = subprocess.run(
                ["ip", "netns", "identify", str(pid)], capture_output=True, text=True
            ).stdout.strip()
            assert where in spaces, (pid, where)
        helpers = _helper_pids(prefix)  # the watchdog, and the userspace WAN if any
        assert len(helpers) == (2 if NETNS.delay == "wan" else 1), helpers
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
        assert _netns_left(proc.pid) == ([], [])
        deadline = time.monotonic() + 10
        while _helper_pids(prefix) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _helper_pids(prefix) == []
        deadline = time.monotonic() + 10
        while node_pids(tmp_path / "tmp") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert node_pids(tmp_path / "tmp") == []
        # nor anything else the demo started (its gateway, agents): every one of them has
        # the demo's temporary dir in its command line; the gateway may drain, then its stop
        # is bounded (the drain deadline + 5 s)
        deadline = time.monotonic() + 25
        while demo_pids(tmp_path / "tmp") and time.monotonic() < deadline:
            time.sleep(0.1)
        assert demo_pids(tmp_path / "tmp") == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=30)
        # the next demo would sweep the dead one's temp dir; the test does it now
        for d in (tmp_path / "tmp").iterdir():
            shutil.rmtree(d, ignore_errors=True)


def test_interactive_mode_stops_everything_on_ctrl_c(tmp_path: Path) -> None:
    # loopback addresses (127.78.r.n), whatever --network auto would pick here
    proc = start_demo(tmp_path, 78, "--interactive", "--regions", "2", "--network", "transport")
    try:
        _explore_then_ctrl_c(proc, tmp_path)
    finally:
        if proc.poll() is None:  # a failed expectation must not leave the federation running
            proc.kill()
            proc.communicate(timeout=30)


def _explore_then_ctrl_c(proc: subprocess.Popen[str], tmp_path: Path) -> None:
    text = output_until_interactive(proc)
    assert "http://127.78.1.1:8080/metrics" in text, text
    assert len(node_pids(78)) == 6
    with urllib.request.urlopen("http://127.78.1.1:8080/metrics", timeout=5) as r:
        assert b"novacron_raft_commit_index" in r.read()
    with urllib.request.urlopen("http://127.78.2.1:8080/metrics", timeout=5) as r:
        assert b"novacron_sync_keys" in r.read()  # one port: the node's and the federation's
    listed = CliRunner().invoke(
        main, ["vms", "list", "--federation", "--url", "http://127.78.2.1:8080", "--json"]
    )
    assert listed.exit_code == 0, listed.output
    assert {vm["home_region"] for vm in json.loads(listed.output)} == {"us-east1", "us-west1"}
    # a us-east1 VM read through a us-west1 node's own API: answered from its federation replica
    # (not the conflict chapter's VM: both regions wrote that one, so its record is "merged")
    east = next(
        vm
        for vm in json.loads(listed.output)
        if vm["home_region"] == "us-east1"
        and (vm.get("labels") or {}).get("novacron.io/writes") != "multi"
    )
    with urllib.request.urlopen(f"http://127.78.2.1:8080/v1/vms/{east['id']}", timeout=5) as r:
        assert r.headers["X-Novacron-Source"] == "federation-replica"
        assert json.loads(r.read())["home_region"] == "us-east1"
    proc.send_signal(signal.SIGINT)
    rest, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, text + rest
    assert node_pids(78) == []
    assert list((tmp_path / "tmp").iterdir()) == []
