"""``novacron-operator`` / ``python -m novacron_operator``: run the operator.

One process: kopf watches, a Lease elects the single acting replica, a work queue runs
level-based reconciles, and an aiohttp endpoint serves /healthz, /readyz and /metrics.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import socket
import sys
from typing import Any

import kopf
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, Gauge, generate_latest

from novacron_operator.handlers import PARENTS, register, resync
from novacron_operator.kube import Kube, load_config
from novacron_operator.leader import LeaderElector
from novacron_operator.reconcile import Follow, Key, Options
from novacron_operator.reconcilers import RECONCILERS
from novacron_operator.worker import WorkQueue

LEADER = Gauge("novacron_operator_leader", "1 while this replica holds the Lease")
log = logging.getLogger("novacron.operator")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for k in ("identity", "kind", "namespace"):
            if hasattr(record, k):
                out[k] = getattr(record, k)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out)


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="novacron-operator", description=__doc__)
    p.add_argument("--namespace", "-n", action="append", default=[], help="watched namespace")
    p.add_argument("--kubeconfig", default=None)
    p.add_argument("--health-host", default="0.0.0.0")
    p.add_argument("--health-port", type=int, default=8081)
    p.add_argument("--identity", default=f"{socket.gethostname()}-{os.getpid()}")
    p.add_argument("--lease-name", default="novacron-operator")
    p.add_argument("--lease-namespace", default=None, help="defaults to the first namespace")
    p.add_argument("--lease-seconds", type=int, default=15)
    p.add_argument(
        "--agent-namespace",
        default=None,
        help="privileged namespace for DWCP agents (hostNetwork + NET_ADMIN)",
    )
    p.add_argument(
        "--resync",
        type=float,
        default=30.0,
        help="seconds between passes of every resource (the safety net for missed events)",
    )
    p.add_argument("--workers", type=int, default=4)
    p.add_argument(
        "--coalesce",
        type=float,
        default=0.5,
        help="seconds a child's change waits so a burst of them asks for one pass",
    )
    p.add_argument(
        "--no-member-management",
        dest="manage_members",
        action="store_false",
        help="scale and roll node pods without the nodes' admin API (no learner/promote/"
        "remove/transfer): only for pods that run no node, like kwok's; a live group needs it",
    )
    return p.parse_args(argv)


async def serve_health(host: str, port: int, ready: asyncio.Event) -> web.AppRunner:
    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def readyz(_: web.Request) -> web.Response:
        return web.Response(
            text="ok" if ready.is_set() else "starting", status=200 if ready.is_set() else 503
        )

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner


async def run(args: argparse.Namespace) -> None:
    if args.kubeconfig:
        os.environ["KUBECONFIG"] = args.kubeconfig  # kopf's own login reads it too
    namespaces: list[str] = args.namespace or ["default"]
    kube = Kube(load_config(args.kubeconfig))
    # stop: SIGTERM/SIGINT (or kopf ending on its own). kopf gets its own flag, raised only
    # once our tasks have ended: kopf awaits every task created after it started for 5 s
    # before cancelling it, so ours must be gone by then, and its watches go last
    stop = asyncio.Event()
    kopf_stop = asyncio.Event()

    def take_signals() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)

    take_signals()

    async def reconcile(key: Key) -> Follow:
        await kube.wait_synced()  # passes read children from the informers
        return await RECONCILERS[key.kind](kube, key, opts)

    opts = Options(agent_namespace=args.agent_namespace, manage_members=args.manage_members)
    queue = WorkQueue(reconcile, args.workers)
    elector = LeaderElector(
        kube,
        args.lease_namespace or namespaces[0],
        args.lease_name,
        args.identity,
        args.lease_seconds,
    )

    async def elected() -> None:
        LEADER.set(1)
        queue.enabled = True
        for ns in namespaces:  # events seen while following were dropped: start from the world
            for kind in PARENTS:
                for item in await kube.list(kind, ns):
                    queue.add(Key(kind, ns, item["metadata"]["name"]))

    elector.on_elected = elected
    registry = kopf.OperatorRegistry()
    register(registry, queue, kube, tuple(namespaces), args.coalesce)

    @kopf.on.startup(registry=registry)
    async def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.posting.enabled = False  # we post our own Events, on transitions only
        # fixed namespaces, CRDs installed beforehand: no cluster-wide namespace/CRD watches,
        # so the operator's RBAC stays namespaced
        settings.scanning.disabled = True
        settings.watching.server_timeout = 300
        settings.networking.request_timeout = 60
        # kopf replaced our SIGTERM/SIGINT handlers as it started: take them back, so a
        # signal stops our work first and kopf after it
        take_signals()

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        c = kube.config
        return kopf.ConnectionInfo(
            server=c.server,
            ca_data=c.ca_pem,
            certificate_data=c.cert_pem,
            private_key_data=c.key_pem,
            token=c.current_token(),
            scheme="Bearer" if c.current_token() else None,
            default_namespace=namespaces[0],
        )

    ready = asyncio.Event()
    kopf_ready = asyncio.Event()
    runner = await serve_health(args.health_host, args.health_port, ready)
    log.info("starting", extra={"identity": args.identity})
    try:
        async with asyncio.TaskGroup() as tg:
            kopf_task = tg.create_task(
                kopf.operator(
                    registry=registry,
                    standalone=True,  # no kopf peering: the Lease decides who acts
                    namespaces=namespaces,
                    stop_flag=kopf_stop,
                    ready_flag=kopf_ready,
                )
            )
            kopf_task.add_done_callback(lambda _: stop.set())
            worker_task = tg.create_task(queue.run())
            informers = tg.create_task(kube.run_informers())
            elector_task = tg.create_task(elector.run(stop))
            resync_task = tg.create_task(resync(kube, queue, tuple(namespaces), args.resync))

            async def mark_ready() -> None:
                await kopf_ready.wait()
                ready.set()

            marker = tg.create_task(mark_ready())
            await stop.wait()
            log.info("stopping", extra={"identity": args.identity})
            ready.clear()
            marker.cancel()
            # no new pass starts; the ones running are cancelled (every pass is idempotent:
            # the next leader repeats whatever one left half done)
            queue.enabled = False
            LEADER.set(0)
            worker_task.cancel()
            informers.cancel()
            resync_task.cancel()
            # the elector hands the Lease back as it ends, so a standby takes over at once
            await asyncio.wait([worker_task, informers, elector_task], timeout=10)
            kopf_stop.set()
            _, pending = await asyncio.wait([kopf_task], timeout=10)
            for task in pending:
                task.cancel()
    finally:
        await runner.cleanup()
        await opts.nodes.close()
        await kube.close()
    log.info("stopped", extra={"identity": args.identity})


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)
    logging.getLogger("kopf").setLevel(logging.WARNING)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    try:
        asyncio.run(run(args))
    except Exception:  # a crash, not a shutdown: say so in the log's own format
        log.exception("operator failed")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
