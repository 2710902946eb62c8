"""A tiny kubelet stand-in for one region on the local control plane: kwok marks the node
pods Running but runs nothing, so for every such pod this starts a REAL ``novacron node``
process on 127.0.0.1 (id = pod name, its own data directory kept across pod replacements
like a PVC, the region ConfigMap's node.json as its config file, bootstrap peers mapped to
local ports) and stops it when the pod goes. The operator finds the processes through the
address map file it is given as NOVACRON_NODE_ADDRESSES.

Every process runs in its own process group; stop() (also registered with atexit) kills
the groups, so nothing outlives the test run even when a test fails.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from novacron_operator.kube import Kube, load_config

from tests.runtime.procs import free_ports

SELECTOR = "app.kubernetes.io/instance={name},app.kubernetes.io/component=node"


def free_port() -> int:
    """A port with the next one free too (the node's wire API), below the ephemeral range."""
    return free_ports(1)[0]


@dataclass
class NodeProc:
    pod: str
    uid: str
    image: str
    proc: subprocess.Popen[bytes]


@dataclass
class FakeKubelet:
    kubeconfig: Path
    namespace: str
    region: str  # the NovaCronRegion (= StatefulSet) name
    root: Path
    poll: float = 0.25
    ports: dict[str, tuple[int, int]] = field(default_factory=dict)
    procs: dict[str, NodeProc] = field(default_factory=dict)
    history: list[str] = field(default_factory=list)  # "start pod image" / "stop pod"
    # pods whose next start finds an empty data directory (a lost PVC)
    lost_volumes: set[str] = field(default_factory=set)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def map_path(self) -> Path:
        return self.root / "addresses.json"

    def start(self) -> FakeKubelet:
        self.root.mkdir(parents=True, exist_ok=True)
        self._write_map()
        atexit.register(self.stop)
        self._thread = threading.Thread(target=self._run, name="fake-kubelet", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        with self._lock:
            for name in list(self.procs):
                self._kill(name)

    # ------------------------------------------------------------------ helpers for tests

    def url(self, pod: str) -> str:
        return f"http://127.0.0.1:{self.ports[pod][1]}"

    def cluster(self, pod: str) -> dict[str, Any] | None:
        import urllib.request

        try:
            with urllib.request.urlopen(self.url(pod) + "/v1/cluster", timeout=2) as r:
                doc: dict[str, Any] = json.loads(r.read())
                return doc
        except (OSError, ValueError, KeyError):
            return None

    def lose_volume(self, pod: str) -> None:
        """The pod's next incarnation starts on an empty data directory, as when its PVC
        (and the disk under it) is gone: delete the pod after calling this."""
        with self._lock:
            self.lost_volumes.add(pod)

    def log(self, pod: str) -> str:
        return (self.root / pod / "node.log").read_text(errors="replace")

    def running(self) -> list[str]:
        with self._lock:
            return sorted(n for n, p in self.procs.items() if p.proc.poll() is None)

    # ------------------------------------------------------------------ the loop

    def _run(self) -> None:
        asyncio.run(self._loop())

    async def _loop(self) -> None:
        kube = Kube(load_config(str(self.kubeconfig)))
        try:
            while not self._stop.is_set():
                try:
                    await self._sync(kube)
                except (aiohttp.ClientError, TimeoutError, OSError) as e:
                    print(f"fake kubelet: {e}", file=sys.stderr)
                await asyncio.sleep(self.poll)
        finally:
            await kube.close()

    async def _sync(self, kube: Kube) -> None:
        pods = await kube.list("Pod", self.namespace, SELECTOR.format(name=self.region))
        live: dict[str, dict[str, Any]] = {}
        for p in pods:
            meta, status = p["metadata"], p.get("status") or {}
            if meta.get("deletionTimestamp") or status.get("phase") != "Running":
                continue
            live[meta["name"]] = p
        with self._lock:
            for name in list(self.procs):
                np = self.procs[name]
                if name not in live or live[name]["metadata"]["uid"] != np.uid:
                    self._kill(name)  # pod deleted or replaced by a new one
        cm = None
        for name, p in sorted(live.items()):
            with self._lock:
                if name in self.procs:
                    continue
            if cm is None:
                cm = await kube.get("ConfigMap", self.namespace, f"{self.region}-config")
                if cm is None:
                    return
            self._spawn(p, json.loads(cm["data"]["node.json"]), cm["data"].get("cluster-state"))

    def _port(self, pod: str) -> tuple[int, int]:
        if pod not in self.ports:
            self.ports[pod] = (free_port(), free_port())
            self._write_map()
        return self.ports[pod]

    def _write_map(self) -> None:
        doc = {
            n: {"peer": f"127.0.0.1:{p}", "http": f"127.0.0.1:{h}"}
            for n, (p, h) in self.ports.items()
        }
        tmp = self.map_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc))
        os.replace(tmp, self.map_path)  # the operator never reads half a file

    def _spawn(
        self, pod: dict[str, Any], config: dict[str, Any], cluster_state: str | None
    ) -> None:
        name, uid = pod["metadata"]["name"], pod["metadata"]["uid"]
        image = pod["spec"]["containers"][0]["image"]
        # the bootstrap members the ConfigMap names, at the ports this stand-in gave them
        bootstrap = [item.split("=", 1)[0] for item in config["peers"].split(",") if item]
        peers = ",".join(
            f"{b}=127.0.0.1:{self._port(b)[0]}/127.0.0.1:{self._port(b)[1]}" for b in bootstrap
        )
        peer, http = self._port(name)
        pod_dir = self.root / name
        pod_dir.mkdir(exist_ok=True)
        with self._lock:
            if name in self.lost_volumes:
                self.lost_volumes.discard(name)
                shutil.rmtree(pod_dir / "data", ignore_errors=True)
        if cluster_state is not None:  # the ConfigMap key the pod would mount beside node.json
            (pod_dir / "cluster-state").write_text(cluster_state)
            config = {**config, "initial_cluster_state_file": str(pod_dir / "cluster-state")}
        cfg = pod_dir / "node.json"
        cfg.write_text(json.dumps(config))
        env = {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            # what the StatefulSet sets, then what the pod's network and PVC provide here
            "NOVACRON_NODE_ID": name,
            "NOVACRON_PEERS": peers,
            "NOVACRON_PEER_LISTEN": f"127.0.0.1:{peer}",
            "NOVACRON_HTTP_LISTEN": f"127.0.0.1:{http}",
            "NOVACRON_DATA_DIR": str(pod_dir / "data"),
            # a shared 2-core machine: no fsync, and elections not triggered by CPU stalls
            "NOVACRON_FSYNC": "false",
            "NOVACRON_ELECTION_TIMEOUT_MS": "1000",
            "NOVACRON_HEARTBEAT_MS": "100",
        }
        log = open(pod_dir / "node.log", "ab")  # noqa: SIM115 (the child holds it)
        proc = subprocess.Popen(
            [sys.executable, "-m", "novacron_core.runtime.node_cli", "--config", str(cfg)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # its own process group: killed as one at teardown
        )
        log.close()
        with self._lock:
            self.procs[name] = NodeProc(name, uid, image, proc)
        self.history.append(f"start {name} {image}")

    def _kill(self, name: str) -> None:
        np = self.procs.pop(name)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(np.proc.pid, signal.SIGTERM)
        try:
            np.proc.wait(5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(np.proc.pid, signal.SIGKILL)
            np.proc.wait()
        self.history.append(f"stop {name}")

    def wait_running(self, pods: list[str], timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(p in self.running() and self.cluster(p) for p in pods):
                return
            time.sleep(0.2)
        raise AssertionError(f"nodes {pods} not all answering; running: {self.running()}")
