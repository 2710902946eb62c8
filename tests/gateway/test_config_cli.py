"""``novacron gateway``'s configuration shapes, its errors, and the process's lifecycle
(a real subprocess: start, serve, drain on SIGTERM, exit 0)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path

import aiohttp
import pytest
from click.testing import CliRunner

from novacron_core.cli import main
from novacron_core.runtime.gateway.config import ConfigError, load_config
from tests.gateway.backends import Backend
from tests.runtime.procs import free_ports

REGION_JSON = {  # what operator/novacron_operator/builders/region.py region_info renders
    "cluster": "prod",
    "region": "us-east1",
    "zones": ["a", "b"],
    "protocol": "raft",
    "nodes": "east.novacron.svc:8080",
    "ports": {"api": 8080, "peer": 7000, "metrics": 9090},
    "tls": {"mode": "generated", "caSecret": "prod-ca"},
}
TOPOLOGY = {  # the federation's {fed}-topology ConfigMap, topology.json
    "federation": "fed",
    "members": [
        {"name": "us-east1", "local": True, "endpoints": ["east.novacron.svc:7000"]},
        {"name": "eu", "region": "europe-west1", "local": False, "endpoints": ["10.0.0.5:7000"]},
    ],
    "gossip": {},
}


def write(tmp_path: Path, name: str, doc: object) -> str:
    p = tmp_path / name
    p.write_text(json.dumps(doc))
    return str(p)


def test_region_json_as_the_operator_passes_it(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, "region.json", REGION_JSON))
    assert cfg.home() == "us-east1"
    assert [(r.name, r.seeds) for r in cfg.regions] == [("us-east1", ["east.novacron.svc:8080"])]
    assert cfg.listen == "0.0.0.0:8443"  # the Deployment's "https" containerPort
    assert cfg.admin_listen == "0.0.0.0:9090"  # its "metrics" port, where the probes go


def test_topology_adds_every_region_on_the_client_port(tmp_path: Path) -> None:
    cfg = load_config(
        write(tmp_path, "region.json", REGION_JSON), write(tmp_path, "topology.json", TOPOLOGY)
    )
    assert cfg.home() == "us-east1"
    assert {r.name: r.seeds for r in cfg.regions} == {
        "us-east1": ["east.novacron.svc:8080"],  # region.json's own entry wins
        "europe-west1": ["10.0.0.5:8080"],  # peer port 7000 -> client API 8080
    }
    alone = load_config(write(tmp_path, "t.json", TOPOLOGY))
    assert [r.name for r in alone.regions] == ["us-east1", "europe-west1"]


def test_own_config_yaml_with_flags_winning(tmp_path: Path) -> None:
    p = tmp_path / "gw.yaml"
    p.write_text(
        "regions:\n"
        "  - {name: a, backends: ['127.0.0.1:1', '127.0.0.1:2'], location: [50.1, 8.7]}\n"
        "  - {name: b, seeds: ['10.0.0.1:8080']}\n"
        "algorithm: weighted_round_robin\n"
        "affinity: maglev\n"
        "health: {kind: tcp, interval_s: 2}\n"
        "outlier: {consecutive_5xx: 7}\n"
    )
    cfg = load_config(str(p), algorithm="ip_hash", region="b")
    assert cfg.algorithm == "ip_hash"
    assert cfg.home() == "b"
    spec = cfg.pool_spec()
    assert spec.affinity == "maglev"
    assert spec.health.kind == "tcp"
    assert spec.health.interval_s == 2
    assert spec.outlier.consecutive_5xx == 7
    assert cfg.locations()["a"].lat == 50.1


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"algorithm": "fastest"}, "algorithm"),
        ({"listen": "nowhere"}, "listen"),
        ({"health": {"interval_s": 0}}, "interval"),
        ({"outlier": {"bogus": 1}}, "bogus"),
        ({"region": "mars"}, "mars"),
        ({"max_inflight": 0}, "max_inflight"),
        ({"tls_cert": "/x.pem"}, "tls_key"),
    ],
)
def test_bad_settings_name_the_field(values: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(None, None, ("a=127.0.0.1:8080",), (), **values)


def test_bad_files_and_flags_say_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(str(tmp_path / "missing.json"))
    bad = tmp_path / "bad.json"
    bad.write_text("{nope")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_config(str(bad))
    with pytest.raises(ConfigError, match="no regions"):
        load_config()
    with pytest.raises(ConfigError, match="--backend: REGION=HOST:PORT"):
        load_config(None, None, (), ("127.0.0.1:80",))
    with pytest.raises(ConfigError, match="members"):
        load_config(write(tmp_path, "t.json", {"members": [{"endpoints": []}]}))


def test_cli_help_and_errors() -> None:
    runner = CliRunner()
    res = runner.invoke(main, ["gateway", "--help"])
    assert res.exit_code == 0
    for words in ("--config", "region.json", "X-Novacron-Region", "not_applied", "SIGTERM"):
        assert words in res.output
    res = runner.invoke(main, ["gateway", "--algorithm", "round_robin"])
    assert res.exit_code == 2
    assert "no regions" in res.output
    res = runner.invoke(main, ["gateway", "--seed", "a=h:1", "--print-config"])
    assert res.exit_code == 0
    assert json.loads(res.output)["regions"][0]["seeds"] == ["h:1"]


async def test_the_process_drains_on_sigterm_and_exits_zero(tmp_path: Path) -> None:
    backend = Backend("local")
    await backend.start()
    port, admin = free_ports(2)
    proc = await asyncio.create_subprocess_exec(
        *[
            sys.executable,
            "-m",
            "novacron_core.cli",
            "gateway",
            "--listen",
            f"127.0.0.1:{port}",
            "--admin-listen",
            f"127.0.0.1:{admin}",
            "--backend",
            f"local=127.0.0.1:{backend.port}",
            "--shutdown-timeout",
            "5",
        ],
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        async with aiohttp.ClientSession() as http:
            deadline = time.monotonic() + 20
            while True:
                try:
                    async with http.get(f"http://127.0.0.1:{admin}/readyz") as r:
                        if r.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                assert time.monotonic() < deadline, "gateway not ready"
                await asyncio.sleep(0.05)
            slow = asyncio.create_task(http.get(f"http://127.0.0.1:{port}/v1/slow?s=1.0"))
            await asyncio.sleep(0.3)
            proc.send_signal(signal.SIGTERM)
            resp = await slow  # in flight when the signal came: still answered
            assert resp.status == 200
            resp.release()
        code = await asyncio.wait_for(proc.wait(), 10)
        assert code == 0
        out = (await proc.stdout.read()).decode() if proc.stdout else ""
        assert "draining" in out
        assert "Traceback" not in out
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await backend.stop()
