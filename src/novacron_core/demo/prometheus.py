"""Prometheus for the demo federation.

Every demo writes ``prometheus-targets.json`` in its directory: Prometheus's file_sd format,
one group per region (its nodes' ``/metrics``, labels ``job=novacron-node`` and ``region``)
and one for the gateway's admin port (``job=novacron-gateway``), all taken from the demo's
own ``Layout`` and ``DemoGateway``. ``novacron demo --prometheus BINARY`` also starts that
Prometheus binary on loopback against the file, with the rules the chart ships
(``observe.rules.render()``, the same text as ``charts/novacron/rules/``), under the
demo's supervisor: it stops, and its data goes, with the nodes.

The agents are not targets: the demo runs them only during their chapter (namespaces
only), so they would be down targets for the rest of the run.
"""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from novacron_core.demo.federation import Layout
from novacron_core.demo.gateway import GATEWAY_HOST_OCTET, DemoGateway
from novacron_core.demo.procs import Supervisor
from novacron_core.observe import rules

TARGETS_FILE = "prometheus-targets.json"
PORT = 9090
HOST_LAST_OCTET = 2  # 127.OCTET.250.2: next to the gateway's .1, in no region's /24
SCRAPE_S = 2  # a short demo: several samples per rate() window within seconds


def targets(layout: Layout, gateway: DemoGateway) -> list[dict[str, Any]]:
    """file_sd groups: every node by region, then the gateway (whose own ``region`` label,
    on its per-backend series, names the backend's region, so its target has none)."""
    groups: list[dict[str, Any]] = [
        {
            "targets": [n.http_addr for n in layout.in_region(r)],
            "labels": {"job": "novacron-node", "region": r},
        }
        for r in layout.regions
    ]
    groups.append({"targets": [gateway.admin_addr], "labels": {"job": "novacron-gateway"}})
    return groups


def write_targets(base: Path, layout: Layout, gateway: DemoGateway) -> Path:
    path = base / TARGETS_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(targets(layout, gateway), indent=2))
    tmp.replace(path)  # Prometheus watches the file: never let it read half of one
    return path


def config(targets_file: Path, rules_file: Path) -> dict[str, Any]:
    return {
        "global": {"scrape_interval": f"{SCRAPE_S}s", "evaluation_interval": f"{SCRAPE_S}s"},
        "rule_files": [str(rules_file)],
        "scrape_configs": [
            {
                "job_name": "novacron-demo",  # each group's own `job` label replaces it
                # every node labels its samples with its region itself, as in Kubernetes;
                # honoring them keeps one `region` (no `exported_region` copy), while `up`
                # still gets the target file's
                "honor_labels": True,
                "file_sd_configs": [{"files": [str(targets_file)], "refresh_interval": "5s"}],
            }
        ],
    }


class DemoPrometheus:
    def __init__(self, sup: Supervisor, binary: str, octet: int) -> None:
        self.sup, self.binary = sup, binary
        self.host = f"127.{octet}.{GATEWAY_HOST_OCTET}.{HOST_LAST_OCTET}"
        self.url = f"http://{self.host}:{PORT}"
        self.name = "prometheus"

    def launch(self, targets_file: Path) -> Path:
        """Start it on the targets file; returns its configuration file."""
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((self.host, PORT))
            except OSError as e:
                raise RuntimeError(f"{self.host}:{PORT} is already in use: {e}") from None
        d = self.sup.dir_for(self.name)
        rules_file = d / "novacron.rules.yaml"
        rules_file.write_text(rules.render())
        cfg = d / "prometheus.yml"
        cfg.write_text(yaml.safe_dump(config(targets_file, rules_file), sort_keys=False))
        self.sup.start(
            self.name,
            [
                self.binary,
                f"--config.file={cfg}",
                f"--storage.tsdb.path={d / 'data'}",
                f"--web.listen-address={self.host}:{PORT}",
            ],
        )
        return cfg

    def ready(self) -> float:
        """Seconds waited until it answers ready (it failing to start names its log)."""
        return self.sup.wait_until(f"Prometheus on {self.url}", self._ready, 30, interval=0.1)

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/-/ready", timeout=1) as r:
                return bool(r.status == 200)
        except (urllib.error.URLError, OSError):
            return False
