"""The federation side of a node process: the federation file (read at start, then watched
and applied without a restart), sending federation messages (through the demo's link rules
when ``--demo-link-rules`` is on), and the federation's HTTP API, status and metrics.

Routes (the node's one HTTP port): ``GET /v1/federation/vms``, ``GET /v1/federation/vms/{id}``
(every region's VMs, each merged from the regions' copies this node's replica holds: the
conflict engine's records), ``GET /v1/federation/status``, and with ``--demo-link-rules``
``POST /v1/federation/netem {"partitioned": [regions]}``.

The file is polled every ``federation_poll_s`` (a mounted ConfigMap is updated in place by
the kubelet, so its mtime or content changes); a changed file that does not parse keeps the
last good configuration, and says so in the status and the log. A file that is missing or
bad when the node starts leaves the node serving its region unfederated until a good one
appears.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import time
from collections import Counter
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from aiohttp import web

from novacron_core.conflict.policy import to_json
from novacron_core.conflict.record import public
from novacron_core.federation import vmflow
from novacron_core.federation.config import (
    FederationFile,
    FederationFileError,
    FederationPlan,
    parse,
    plan,
)
from novacron_core.federation.netem import LinkRules, demo_rtt
from novacron_core.runtime.api_models import NetemRequest
from novacron_core.runtime.problems import Problem
from novacron_core.runtime.transport import Addr, split_host_port
from novacron_core.runtime.validation import validated
from novacron_core.sync.engine import SyncNode
from novacron_core.vm import CorruptRecordError, check_record

if TYPE_CHECKING:
    from novacron_core.runtime.node import NodeServer

CONFLICT_STATES = ("open", "closed", "manual_pending", "held", "superseded")
log = logging.getLogger(__name__)


class FederationService:
    def __init__(self, node: NodeServer, own_peer: str) -> None:
        s = node.settings
        self.node = node
        self.path = s.federation_file
        self.region = s.region
        self.poll_s = s.federation_poll_s
        self.doc: FederationFile | None = None
        self.plan: FederationPlan | None = None
        self.error: str | None = None  # the last problem with the file (None: it is good)
        self.loaded_at: float | None = None
        self._seen: tuple[int, int, bytes] | None = None  # (mtime_ns, size, digest) read last
        # the demo's stand-in for a WAN (one-way delay, partitions); never in production
        self.rules = LinkRules() if s.demo_link_rules else None
        self.link_dropped = 0  # federation messages the link rules dropped (a partition)
        self.sent: Counter[str] = Counter()  # federation messages sent, by type
        self._addrs: dict[str, Addr | None] = {}
        if self.path:
            self._read(first=True)
        self.fed_id = own_peer or self._own_endpoint(s.node_id) or s.node_id
        if self.doc is not None:
            self._adopt(self.doc)
        self._metrics(node)

    # ------------------------------------------------------------ the file

    def initial_plan(self) -> FederationPlan | None:
        return self.plan

    def _own_endpoint(self, node_id: str) -> str | None:
        """Without a ``peers`` entry of its own (a joiner), a node is the endpoint of its
        region's member whose host's first label is its id (``{pod}.{service}...``)."""
        for m in self.doc.members if self.doc else []:
            if m.region == self.region:
                for ep in m.endpoints:
                    if ep.split(".", 1)[0].split(":", 1)[0] == node_id:
                        return ep
        return None

    def _read(self, first: bool = False) -> bool:
        """Read the file if it changed; True when a new good document was taken."""
        assert self.path is not None
        try:
            st = _stat(self.path)
            if st is None:
                raise FederationFileError(f"{self.path}: no such federation file")
            with open(self.path, "rb") as f:
                raw = f.read()
            seen = (st[0], st[1], hashlib.sha256(raw).digest())
            if seen == self._seen:
                return False
            self._seen = seen
            doc = parse(raw.decode("utf-8", errors="replace"), self.path)
        except FederationFileError as e:
            if str(e) != self.error:
                kept = "keeping the last good one" if self.doc else "not federated until fixed"
                log.error("federation file: %s (%s)", e, kept)
            self.error = str(e)
            return False
        if not first and doc == self.doc:
            self.error = None
            return False
        self.doc, self.error = doc, None
        return True

    def _adopt(self, doc: FederationFile) -> None:
        self.plan = plan(doc, self.region, self.fed_id)
        self.loaded_at = time.time()
        if self.rules is not None:
            self.rules.rtt_ms = demo_rtt([m.region for m in doc.members])
        if not self.plan.member:
            log.warning(
                "federation %s: region %r is not among its members (%s): not replicating",
                doc.federation,
                self.region,
                ", ".join(m.region for m in doc.members),
            )
        for what, why in self.plan.not_honoured.items():
            log.warning("federation %s: %s not honoured: %s", doc.federation, what, why)

    async def watch(self) -> None:
        """Poll the file; apply a changed good one to the running machine."""
        if not self.path:
            return
        while True:
            await asyncio.sleep(self.poll_s)
            self.check()

    def check(self) -> None:
        if not self.path or not self._read():
            return
        assert self.doc is not None
        self._adopt(self.doc)
        new = self.plan
        assert new is not None
        log.info(
            "federation %s: applied (%d peers, gossip %.0f ms x %d, anti-entropy %.0f s)",
            new.name,
            len(new.peers),
            new.sync.interval * 1000,
            new.sync.fanout,
            new.sync.ae_interval,
        )
        driver = self.node.driver
        if driver is not None:
            driver.inject(lambda now: self.node.machine.on_federation(now, new))
        self.node.prune_links()

    # ------------------------------------------------------------ sending

    def peer_addresses(self) -> set[Addr]:
        out = set()
        for p in self.plan.peers if self.plan else {}:
            addr = self._address(p)
            if addr is not None:
                out.add(addr)
        return out

    def _address(self, fed_id: str) -> Addr | None:
        if fed_id not in self._addrs:
            try:
                self._addrs[fed_id] = split_host_port(fed_id)
            except ValueError:
                self._addrs[fed_id] = None
        return self._addrs[fed_id]

    def send(self, dst: str, msg: Any) -> None:
        transport = self.node.transport
        addr = self._address(dst)
        if transport is None or addr is None:
            return
        self.sent[type(msg).__name__] += 1
        if self.rules is not None:
            region = self.plan.peers.get(dst) if self.plan else None
            delay = self.rules.delay(self.region, region) if region else 0.0
            if delay is None:
                self.link_dropped += 1
                return
            if delay > 0:
                asyncio.get_running_loop().call_later(delay, transport.send, addr, msg)
                return
        transport.send(addr, msg)

    # ------------------------------------------------------------ reading

    @property
    def replica(self) -> SyncNode | None:
        return self.node.machine.replica

    async def replicated_vm(self, vm_id: str) -> dict[str, Any] | None:
        """The record this node shows for a VM of any region (its copies, merged by the
        conflict engine; values there that are not VM records never reach it)."""
        rec = self.node.machine.conflicts.view(vm_id)
        if rec is None:
            self._no_corrupt_copy(vm_id)
        if rec is None or rec.get("lifecycle") == "deleted":
            return None
        return public(rec)

    def _no_corrupt_copy(self, vm_id: str) -> None:
        """409 corrupt-record when the replica holds a value for ``vm_id`` that is not a VM
        record (the engine skips it: reported here, never a 500 or a silent 404)."""
        store = self.replica.store if self.replica else None
        for key in store.keys() if store is not None else []:
            if vmflow.kv_key(key) != vmflow.PREFIX + vm_id:
                continue
            raw = store.value(key) if store is not None else None
            if raw is None or vmflow.is_record(key, raw):
                continue
            try:
                check_record(vm_id, raw if isinstance(raw, bytes) else b"")
                why = f"not bytes: {type(raw).__name__}"
            except CorruptRecordError as e:
                why = str(e)
            raise Problem(
                "corrupt-record",
                f"the federation's value {key!r} for VM {vm_id!r} is not a VM record ({why})",
                id=vm_id,
            )

    def home_urls(self, region: str) -> list[str]:
        """Client URLs of a region's nodes, as the federation file lists them."""
        for m in self.doc.members if self.doc else []:
            if m.region == region:
                return list(m.http)
        return []

    def oldest_unacked(self, now: float, heard_within: float = 2.0) -> float:
        """Age of the oldest update here that a live peer (heard from lately) has not
        acknowledged; updates replayed from the journal at start (arrival 0) are skipped."""
        sync = self.replica
        worst = 0.0
        if sync is None:
            return worst
        for peer, heard in sync.last_heard.items():
            if now - heard > heard_within:
                continue
            known = sync.known.get(peer)
            for dot, (_, arrived) in sync.buffer.items():
                if arrived > 0 and (known is None or not known.contains(dot)):
                    worst = max(worst, now - arrived)
        return worst

    def status(self) -> dict[str, Any]:
        sync, p, doc = self.replica, self.plan, self.doc
        now_ms = int(time.time() * 1000)
        loop_now = asyncio.get_running_loop().time()
        out: dict[str, Any] = {
            "node": self.fed_id,
            "region": self.region,
            "federation": p.name if p else None,
            "file": self.path,
            "configured": p is not None,
            "member": bool(p and p.member),
            "error": self.error,
            "loaded_at": self.loaded_at,
            "peers": dict(sorted(p.peers.items())) if p else {},
            "config": _config(doc, p) if doc and p else None,
            "not_honoured": dict(p.not_honoured) if p else {},
            "partitioned": sorted(self.rules.partitioned) if self.rules else [],
            "latency": "injected in the transport (one-way = RTT/2 per region pair)"
            if self.rules is not None
            else "the network's",
            "dropped": self.link_dropped
            + (self.node.transport.dropped if self.node.transport else 0),
            "messages_sent": dict(self.sent),
            "published": self.node.machine.publisher.published,
            "heartbeats": self.node.machine.publisher.heartbeats,
            "sync_replication": _syncwait(self.node.machine.syncwait),
            "conflicts": self.node.machine.conflicts.counts(),
            "conflict_policies": to_json(p.policies) if p else None,
        }
        if sync is not None:
            out |= {
                "replica": sync.replica,
                "keys": len(sync.store),
                "vector": sync.seen.vv.to_wire(),
                "vms": len(self.node.machine.conflicts.records()),
                "region_lag_s": vmflow.region_lags(sync.store, now_ms, self.region),
                "oldest_unacked_s": self.oldest_unacked(loop_now),
                "caught_up": sync.caught_up,
            }
        return out

    # ------------------------------------------------------------ metrics

    def _metrics(self, node: NodeServer) -> None:
        # in the node's metric set: every sample carries this node's region (so the
        # region a lag is measured from is ``from_region``)
        m = node.metrics.set
        self.region_lag = m.gauge(
            "novacron_sync_region_lag_seconds",
            "Age of the newest heartbeat held from each other region (replication lag bound)",
            {"from_region": None},
        )
        self.conflicts_detected = m.gauge(
            "novacron_conflicts_detected",
            "Conflicts this node's replica detected, by kind (concurrent, lifecycle, address, "
            "placement, semantic, double-allocation, stale-epoch, no-ancestor)",
            {"kind": None},
        )
        self.conflicts_decided = m.gauge(
            "novacron_conflicts_decided",
            "Contested fields decided, by the strategy that decided them",
            {"strategy": None},
        )
        self.conflict_gauges = m.gauge(
            "novacron_conflicts_current",
            "Conflicts now: open (current), closed (a write settled them), manual_pending "
            "(parked for a decision), held (writes waiting for one they depend on), superseded",
            {"state": CONFLICT_STATES},
        )
        self.gauges = {
            "keys": m.gauge("novacron_sync_keys", "Keys in the federation replica"),
            "published": m.gauge("novacron_sync_published", "VM record changes published here"),
            "dropped": m.gauge(
                "novacron_sync_link_dropped",
                "Federation messages dropped (the demo's partitions, full link queues)",
            ),
            "unacked": m.gauge(
                "novacron_sync_oldest_unacked_seconds",
                "Age of the oldest update a live peer has not acknowledged",
            ),
            "concurrent": m.gauge(
                "novacron_sync_concurrent_updates", "Concurrent updates detected"
            ),
            "partitioned": m.gauge(
                "novacron_sync_partitioned", "1 while this region is cut off (demo)"
            ),
            "config_error": m.gauge(
                "novacron_federation_config_error",
                "1 while the federation file has a problem (the last good one is used)",
            ),
        }

    def refresh_metrics(self) -> None:
        self._conflict_metrics()
        g, sync = self.gauges, self.replica
        g["published"].set(self.node.machine.publisher.published)
        g["dropped"].set(self.link_dropped)
        g["partitioned"].set(1 if self.rules and self.region in self.rules.partitioned else 0)
        g["config_error"].set(1 if self.error else 0)
        if sync is None:
            return
        g["keys"].set(len(sync.store))
        g["unacked"].set(self.oldest_unacked(asyncio.get_running_loop().time()))
        g["concurrent"].set(sync.concurrent_updates)
        lags = vmflow.region_lags(sync.store, int(time.time() * 1000), self.region)
        for region, lag in lags.items():
            self.region_lag.labels(region).set(lag)

    def _conflict_metrics(self) -> None:
        engine = self.node.machine.conflicts
        counts = engine.counts()
        for kind, n in engine.by_kind().items():
            self.conflicts_detected.labels(kind).set(n)
        for strategy, n in engine.by_strategy().items():
            self.conflicts_decided.labels(strategy).set(n)
        for what in CONFLICT_STATES:
            self.conflict_gauges.labels(what).set(counts[what])

    # ------------------------------------------------------------ HTTP

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/v1/federation/vms", self._vms)
        app.router.add_get("/v1/federation/vms/{id}", self._vm)
        app.router.add_get("/v1/federation/status", self._status)
        app.router.add_post("/v1/federation/netem", self._netem)

    async def _vms(self, request: web.Request) -> web.Response:
        if self.replica is None:
            raise _not_federated(self)
        records = [public(r) for r in self.node.machine.conflicts.records()]
        return web.json_response({"region": self.region, "vms": records})

    async def _vm(self, request: web.Request) -> web.Response:
        if self.replica is None:
            raise _not_federated(self)
        record = await self.replicated_vm(request.match_info["id"])
        if record is None:
            raise Problem("not-found", "no such VM in the federation")
        return web.json_response(record)

    async def _status(self, request: web.Request) -> web.Response:
        return web.json_response(self.status())

    async def _netem(self, request: web.Request) -> web.Response:
        if self.rules is None:
            raise Problem(
                "not-found",
                "link rules are the demo's (novacron node --demo-link-rules): not applied",
            )
        body = await validated(request, NetemRequest)
        self.rules.set_partitioned(body.partitioned)
        return web.json_response({"partitioned": sorted(self.rules.partitioned)})


def _not_federated(svc: FederationService) -> Problem:
    why = svc.error or "no federation file (--federation-file)"
    return Problem("not-found", f"this node is not federated: {why}")


def _syncwait(w: Any) -> dict[str, Any]:
    """replication.mode sync at work: writes waiting, confirmed, timed out (unknown)."""
    return {
        "factor": w.factor,
        "holding": w.holding,
        "confirmed": w.confirmed,
        "timed_out": w.timed_out,
    }


def _config(doc: FederationFile, p: FederationPlan) -> dict[str, Any]:
    """What the node runs with, field by field, in the file's own names."""
    return {
        "gossip": {"intervalMs": round(p.sync.interval * 1000), "fanout": p.sync.fanout},
        "antiEntropy": {"intervalSeconds": p.sync.ae_interval},
        "eagerPush": p.sync.eager,
        "replication": {
            "mode": doc.replication.mode,
            "syncFactor": doc.replication.sync_factor,
            "honoured": "replication" not in p.not_honoured,
        },
        "members": [m.model_dump(by_alias=True) for m in doc.members],
        "heartbeatMs": round(p.heartbeat_interval * 1000),
        "sync": asdict(p.sync),
    }


def _stat(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size
