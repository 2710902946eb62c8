"""schemathesis against a live node, from the OpenAPI document it serves: its node API and
its federation API (``novacron node --federation-file`` serves both on one port). No 5xx, statuses,
media types, headers and bodies as documented, invalid input refused with a 4xx. Bounded: a
fixed seed and number of examples per operation."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.runtime.procs import free_ports, stop

pytestmark = pytest.mark.slow
CONFIG = Path(__file__).with_name("schemathesis.toml")
SCHEMATHESIS = [sys.executable, "-m", "schemathesis.cli", "--config-file", str(CONFIG)]
EXAMPLES = "8"


@dataclass
class Node:
    api: str
    log: Path
    root: Path  # schemathesis runs here: it keeps a crash cache in its working directory


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=1) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except OSError:
        return 0, b""


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    root = tmp_path_factory.mktemp("openapi")
    peer, api = free_ports(2)
    fed_file = root / "federation.json"
    members = [{"name": "r1", "region": "r1", "endpoints": [f"127.0.0.1:{peer}"]}]
    fed_file.write_text(json.dumps({"federation": "solo", "members": members}))
    argv = [
        sys.executable,
        "-m",
        "novacron_core.cli",
        "node",
        "--node-id",
        "n1",
        "--region",
        "r1",
        "--data-dir",
        str(root / "n1"),
        "--peers",
        f"n1=127.0.0.1:{peer}/127.0.0.1:{api}",
        "--federation-file",
        str(fed_file),
        "--demo-link-rules",  # (so that POST /v1/federation/netem is there to test)
    ]
    log = root / "node.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=out, env={**os.environ})
    n = Node(f"http://127.0.0.1:{api}", log, root)
    try:
        deadline = time.monotonic() + 30
        while _get(n.api + "/readyz")[0] != 200 or _get(n.api + "/v1/federation/vms")[0] != 200:
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        yield n
    finally:
        stop(proc)


def _run(node: Node, schema_url: str, *args: str) -> str:
    argv = [*SCHEMATHESIS, "run", schema_url, "--checks", "all", "--no-color"]
    argv += ["--max-examples", EXAMPLES, "--seed", "20261202", "--request-timeout", "10", *args]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=240, cwd=node.root)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "failures" not in out.splitlines()[-1] or " 0 failures" in out, out
    return out


def test_the_node_api_meets_its_openapi_document(node: Node) -> None:
    doc = json.loads(_get(node.api + "/openapi.json")[1])
    assert doc["openapi"].startswith("3.1")
    # The membership admin changes the group it is served by: only invalid changes here.
    out = _run(
        node,
        node.api + "/openapi.json",
        "--exclude-path",
        "/v1/cluster/members",
        "--exclude-path-regex",
        "^/v1/federation/",
    )
    assert "Tested: 24" in out, out  # 15, and the conflict branch's 9 VM and conflict routes
    members = ("--include-path", "/v1/cluster/members", "--mode", "negative")
    out = _run(node, node.api + "/openapi.json", *members)
    assert "Tested: 1" in out, out
    # After all that, the node still serves (nothing it was sent wedged it).
    assert _get(node.api + "/readyz")[0] == 200, node.log.read_text()[-3000:]


def test_the_federation_api_meets_its_openapi_document(node: Node) -> None:
    out = _run(node, node.api + "/openapi.json", "--include-path-regex", "^/v1/federation/")
    assert "Tested: 4" in out, out
