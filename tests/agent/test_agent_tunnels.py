"""A privileged agent reconciles its configured tunnels, keeps them across a restart by
default, and removes them on exit when told to (root only)."""

from __future__ import annotations

import http.client
import json
import time

import pytest

from novacron_core.tunnels import lab
from tests.agent.procs import start_agent, stop
from tests.agent.wanlab import socket_in

pytestmark = pytest.mark.skipif(bool(lab.why_not()), reason=lab.why_not() or "ok")


def _health(ns: str, host: str, port: int) -> dict | None:
    try:
        sock = socket_in(ns)
        sock.settimeout(1)
        sock.connect((host, port))
        conn = http.client.HTTPConnection(host, port, timeout=1)
        conn.sock = sock
        conn.request("GET", "/healthz")
        return json.loads(conn.getresponse().read())
    except OSError:
        return None


def _run_until_tunnels(nl: lab.NetLab, cfg: str, *flags: str):
    proc = start_agent(["--config", cfg, *flags], prefix=nl.exec_argv(0, [])[:4])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        body = _health(nl.ns[0], lab.UNDERLAY[0], 7947)
        if body and body["tunnels"] == "ok":
            return proc
        if proc.poll() is not None:
            raise AssertionError(proc.stderr.read())
        time.sleep(0.1)
    stop([proc])
    raise AssertionError(f"tunnels never reconciled: {body}")


def test_agent_reconciles_keeps_and_removes_its_tunnels(tmp_path):
    with lab.NetLab() as nl:
        state = tmp_path / "tunnels"
        cfg = tmp_path / "agent.json"
        cfg.write_text(json.dumps({
            "name": "a", "region": "r1", "listen": f"{lab.UNDERLAY[0]}:7946",
            "http": f"{lab.UNDERLAY[0]}:7947",
            "peers": [{"name": "b", "region": "r2", "address": f"{lab.UNDERLAY[1]}:7946"}],
            "tunnels": {"kind": "vxlan", "stateDir": str(state), "links": [
                {"peer": "b", "local": lab.UNDERLAY[0], "remote": lab.UNDERLAY[1],
                 "address": "198.19.253.1/30", "key": 9}]},
        }))  # fmt: skip
        view = nl.manager(0)
        proc = _run_until_tunnels(nl, str(cfg))
        links = view.links()
        assert len(links) == 1
        ((name, link),) = links.items()
        assert link["kind"] == "vxlan"
        assert link["addresses"] == ["198.19.253.1/30"]
        assert stop([proc]) == [0]
        assert name in view.links(), "kept on exit by default"

        proc = _run_until_tunnels(nl, str(cfg), "--remove-tunnels-on-exit")
        assert view.links()[name]["index"] == link["index"], "adopted, not recreated"
        assert stop([proc]) == [0]
        assert view.links() == {}, "removed on exit when asked"
