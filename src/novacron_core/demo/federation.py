"""The local federation's layout and the calls the demo makes to its nodes."""

from __future__ import annotations

import json
import socket
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from novacron_core.client import ClientError, NodeClient, NodeUnreachable, OutcomeUnknown
from novacron_core.federation.netem import demo_regions

PEER_PORT, HTTP_PORT = 7000, 8080  # the group's and the federation's messages; every API
GOSSIP_MS, ANTI_ENTROPY_S = 100, 1  # what the demo's federation file asks for


@dataclass(frozen=True)
class NodeSpec:
    name: str  # process name, e.g. us-east1-n2
    node_id: str  # Raft id inside the region, e.g. n2
    region: str
    host: str

    @property
    def http_addr(self) -> str:
        """host:port of its HTTP API and ``/metrics`` (a Prometheus target)."""
        return f"{self.host}:{HTTP_PORT}"

    @property
    def url(self) -> str:
        return f"http://{self.http_addr}"

    @property
    def peer(self) -> str:
        return f"{self.host}:{PEER_PORT}"


class Layout:
    """Regions, nodes and their addresses: 127.OCTET.region.node on loopback by default;
    ``addr(region_index, node_index)`` (network namespaces) otherwise. ``fed_delay`` says who
    delays cross-region federation traffic (the nodes' transport, under the demo's link
    rules, or the network); ``wrap`` turns a node's argv into the command that starts it
    (``ip netns exec …``)."""

    def __init__(
        self,
        regions: int,
        nodes: int,
        octet: int = 0,
        addr: Callable[[int, int], str] | None = None,
        fed_delay: str = "transport",
        wrap: Callable[[str, list[str]], list[str]] | None = None,
    ) -> None:
        self.regions = demo_regions(regions)
        self.per_region = nodes
        self.fed_delay, self.wrap = fed_delay, wrap
        host = addr or (lambda i, j: f"127.{octet}.{i + 1}.{j + 1}")
        self.nodes: list[NodeSpec] = [
            NodeSpec(f"{r}-n{j + 1}", f"n{j + 1}", r, host(i, j))
            for i, r in enumerate(self.regions)
            for j in range(nodes)
        ]

    def busy_addresses(self) -> list[str]:
        """host:port of every address the federation needs that something already holds."""
        busy = []
        for n in self.nodes:
            for port in (PEER_PORT, HTTP_PORT):
                with socket.socket() as s:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    try:
                        s.bind((n.host, port))
                    except OSError:
                        busy.append(f"{n.host}:{port}")
        return busy

    def in_region(self, region: str) -> list[NodeSpec]:
        return [n for n in self.nodes if n.region == region]

    def by_name(self, name: str) -> NodeSpec:
        return next(n for n in self.nodes if n.name == name)

    def federation_file(self) -> dict[str, Any]:
        """The federation file every node reads: what the operator renders from a
        DWCPFederation (``federation/config.py``), one member per region."""
        return {
            "federation": "demo",
            "members": [
                {
                    "name": r,
                    "region": r,
                    "local": True,
                    "endpoints": [m.peer for m in self.in_region(r)],
                }
                for r in self.regions
            ],
            "gossip": {"intervalMs": GOSSIP_MS, "fanout": 3},
            "antiEntropy": {"intervalSeconds": ANTI_ENTROPY_S},
            "replication": {"mode": "async", "syncFactor": 0},
        }

    def write_federation_file(self, path: Path) -> Path:
        path.write_text(json.dumps(self.federation_file(), indent=2))
        return path

    def argv(self, n: NodeSpec, data_dir: str, election_ms: int, federation: Path) -> list[str]:
        """``novacron node``, as the StatefulSet runs it, with the demo's federation file."""
        peers = ",".join(
            f"{m.node_id}={m.host}:{PEER_PORT}/{m.host}:{HTTP_PORT}"
            for m in self.in_region(n.region)
        )
        argv = [
            sys.executable,
            "-m",
            "novacron_core.cli",
            "node",
            "--node-id",
            n.node_id,
            "--region",
            n.region,
            "--data-dir",
            data_dir,
            "--peers",
            peers,
            "--election-timeout-ms",
            str(election_ms),
            "--federation-file",
            str(federation),
        ]
        if self.fed_delay == "transport":
            argv.append("--demo-link-rules")
        return self.wrap(n.region, argv) if self.wrap else argv


def get_json(url: str, timeout: float = 0.5) -> Any:
    """GET ``url`` as JSON; None when the node does not answer (or answers an error)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return json.loads(r.read())
    except (urllib.error.URLError, OSError, ValueError):
        return None


def post_json(url: str, body: Any, timeout: float = 2.0) -> Any:
    req = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read())


def cluster(n: NodeSpec) -> dict[str, Any] | None:
    st = get_json(n.url + "/v1/cluster")
    return st if isinstance(st, dict) else None


def fed_has(n: NodeSpec, vm_id: str) -> bool:
    body = get_json(f"{n.url}/v1/federation/vms/{vm_id}")
    return isinstance(body, dict) and body.get("id") == vm_id


def fed_record(n: NodeSpec, vm_id: str) -> dict[str, Any] | None:
    body = get_json(f"{n.url}/v1/federation/vms/{vm_id}")
    return body if isinstance(body, dict) and body.get("id") == vm_id else None


def write(
    nodes: list[NodeSpec], method: str, path: str, body: Any, deadline_s: float = 15.0
) -> Any:
    """One write through the live nodes of a region (a follower proxies to the leader),
    retried while the group has no leader (503/429) or the outcome is unknown (504).
    A create retried after an unknown outcome that finds the VM there returns the VM."""
    deadline = time.monotonic() + deadline_s
    uncertain = False
    last: Exception | None = None
    while True:
        for n in nodes:
            client = NodeClient(n.url, timeout=3.0)
            try:
                return client.call(method, path, body)
            except ClientError as e:
                if e.status == 409 and uncertain and method == "POST" and path == "/v1/vms":
                    return client.call("GET", f"/v1/vms/{body['id']}")
                if e.status not in (503, 504, 429):
                    raise
                uncertain = uncertain or e.status == 504
                last = e
            except NodeUnreachable as e:  # nothing sent
                last = e
            except OutcomeUnknown as e:  # sent, no answer: it may have been applied
                uncertain = True
                last = e
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"no node of the region took the write within {deadline_s:.0f}s: {last}"
            )
        time.sleep(0.05)
