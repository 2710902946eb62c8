"""Real traces into a real Jaeger v2 (built by e2e/jaeger/build.sh, the chart's own config):

- a client write sent to a follower is one trace across two real node processes: the
  follower's server span, its proxy call to the leader, the leader's server span;
- a span carried inside a codec record continues the trace in another real process;
- before Jaeger runs, the nodes export into nothing: each says so once, and recovers.

One VM write across three regions: test_jaeger_federation.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.runtime.procs import ProcCluster, call, free_ports, stop

from .tools import ROOT, jaeger

pytestmark = pytest.mark.slow
CONFIG = ROOT / "charts/novacron/files/jaeger.yaml"


@contextlib.contextmanager
def running_jaeger(tmp: Path, otlp_http: int) -> Iterator[str]:
    grpc, query, query_grpc, health = free_ports(4)
    text = CONFIG.read_text().replace("MAX_TRACES", "10000")
    for old, port in (
        ("0.0.0.0:4318", otlp_http),
        ("0.0.0.0:4317", grpc),
        ("0.0.0.0:16686", query),
        ("0.0.0.0:16685", query_grpc),
        ("0.0.0.0:13133", health),
    ):
        text = text.replace(old, f"127.0.0.1:{port}")
    assert "0.0.0.0" not in text
    cfg = tmp / "jaeger.yaml"
    cfg.write_text(text)
    log = open(tmp / "jaeger.log", "wb")  # noqa: SIM115 (closed below)
    proc = subprocess.Popen([jaeger(), "--config", str(cfg)], stdout=log, stderr=log)
    base = f"http://127.0.0.1:{query}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert proc.poll() is None, (tmp / "jaeger.log").read_text()[-3000:]
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(f"http://127.0.0.1:{health}/status", timeout=1) as r,
            ):
                if r.status == 200:
                    break
            time.sleep(0.2)
        else:
            raise AssertionError("jaeger not healthy in 30s: " + (tmp / "jaeger.log").read_text())
        yield base
    finally:
        stop(proc)
        log.close()


def fetch_trace(
    base: str,
    trace_id: str,
    want: int,
    timeout: float = 30,
    complete: Callable[[list[dict[str, Any]]], bool] = lambda _: True,
) -> list[dict[str, Any]]:
    """Jaeger's query API (/api/traces/{id}): the trace's spans, each with its process.

    Waits for at least `want` spans for which `complete` holds: every process exports on
    its own schedule, so a count alone can be met by one process's spans before another's
    arrive."""
    deadline = time.monotonic() + timeout
    spans: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{base}/api/traces/{trace_id}", timeout=2) as r:
                data = json.loads(r.read())["data"]
        except OSError:
            data = []
        if data:
            (t,) = data
            spans = [{**s, "process": t["processes"][s["processID"]]} for s in t["spans"]]
            if len(spans) >= want and complete(spans):
                return spans
        time.sleep(0.5)
    raise AssertionError(f"trace {trace_id}: {len(spans)} spans after {timeout}s: {spans}")


def _tag(obj: dict[str, Any], key: str) -> Any:
    return next((t["value"] for t in obj.get("tags", []) if t["key"] == key), None)


def _servers_of(spans: list[dict[str, Any]]) -> set[Any]:
    """The node instances that exported a server span of the trace."""
    return {
        _tag(s["process"], "service.instance.id") for s in spans if _tag(s, "span.kind") == "server"
    }


async def test_a_write_through_a_follower_is_one_trace_across_two_nodes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    jaeger()  # skips with how to build it when absent
    otlp = free_ports(1)[0]
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{otlp}")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "parentbased_always_on")
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "200")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "2")
    (tmp_path / "nodes").mkdir()
    cluster = ProcCluster(tmp_path / "nodes", extra=["--region", "eu-trace"])
    cluster.start_all()
    try:
        async with aiohttp.ClientSession() as http:
            leader = await cluster.leader(http)
            await cluster.all_ready(http)
            # no collector yet: writes succeed, spans are dropped quietly
            for i in range(5):
                st, _ = await call(http, "PUT", cluster.url(leader) + f"/v1/kv/pre-{i}", data=b"x")
                assert st == 200
            await asyncio.sleep(1.5)
            with running_jaeger(tmp_path, otlp) as base:
                follower = next(n for n in cluster.names if n != leader)
                trace_id = secrets.token_hex(16)
                parent = secrets.token_hex(8)
                headers = {"traceparent": f"00-{trace_id}-{parent}-01"}
                st, _ = await call(
                    http, "PUT", cluster.url(follower) + "/v1/kv/traced", data=b"v", headers=headers
                )
                assert st == 200
                both = {follower, leader}
                spans = await asyncio.to_thread(
                    fetch_trace, base, trace_id, 3, 30, lambda got: _servers_of(got) >= both
                )
    finally:
        cluster.stop_all()
    by_id = {s["spanID"]: s for s in spans}
    servers = [s for s in spans if _tag(s, "span.kind") == "server"]
    clients = [s for s in spans if _tag(s, "span.kind") == "client"]
    assert _servers_of(spans) == {follower, leader}, spans
    assert all(s["operationName"] == "PUT /v1/kv/{key}" for s in servers)
    # the follower's server span is the child of our caller; the leader's, of the proxy call
    (front,) = [s for s in servers if _tag(s["process"], "service.instance.id") == follower]
    (back,) = [s for s in servers if _tag(s["process"], "service.instance.id") == leader]
    assert front["references"][0]["spanID"] == parent
    (proxy,) = [c for c in clients if c["spanID"] == back["references"][0]["spanID"]]
    assert by_id[proxy["references"][0]["spanID"]] is front
    assert {_tag(s["process"], "novacron.region") for s in spans} == {"eu-trace"}
    # silent without a collector: one line when it went missing, one when it came back
    for n in cluster.names:
        text = (tmp_path / "nodes" / f"{n}.log").read_text()
        assert text.count("cannot export spans") <= 1, text[-3000:]
        assert "Traceback" not in text, text[-3000:]
    assert any(
        "answers again" in (tmp_path / "nodes" / f"{n}.log").read_text() for n in cluster.names
    )


SENDER = """
import sys
from dataclasses import dataclass
from novacron_core.codec import encode, record
from novacron_core.observe import tracing

@record(type_id=64_018)
@dataclass(frozen=True)
class Delta:
    vm: str
    trace: bytes = b""

tracing.setup_tracing("novacron-region-a", {"novacron.region": "a"})
with tracing.tracer().start_as_current_span("sync.send") as span:
    sys.stdout.write(encode(Delta("vm-1", tracing.to_carrier())).hex())
    sys.stdout.write(" " + format(span.get_span_context().trace_id, "032x"))
tracing.shutdown_tracing()
"""
RECEIVER = """
import sys
from dataclasses import dataclass
from novacron_core.codec import decode, record
from novacron_core.observe import tracing

@record(type_id=64_018)
@dataclass(frozen=True)
class Delta:
    vm: str
    trace: bytes = b""

tracing.setup_tracing("novacron-region-b", {"novacron.region": "b"})
msg = decode(bytes.fromhex(sys.stdin.read()), Delta)
with tracing.continued("sync.merge", msg.trace, attributes={"vm": msg.vm}):
    pass
tracing.shutdown_tracing()
"""


def test_a_span_carried_in_a_message_continues_in_another_process(tmp_path: Path) -> None:
    jaeger()
    otlp = free_ports(1)[0]
    env = {
        **os.environ,
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{otlp}",
        "OTEL_TRACES_SAMPLER": "always_on",
    }
    with running_jaeger(tmp_path, otlp) as base:
        sent = subprocess.run(
            [sys.executable, "-c", SENDER], env=env, capture_output=True, text=True, timeout=60
        )
        assert sent.returncode == 0, sent.stderr
        wire, trace_id = sent.stdout.split()
        got = subprocess.run(
            [sys.executable, "-c", RECEIVER],
            env=env,
            input=wire,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert got.returncode == 0, got.stderr
        spans = fetch_trace(base, trace_id, 2)
    send = next(s for s in spans if s["operationName"] == "sync.send")
    merge = next(s for s in spans if s["operationName"] == "sync.merge")
    assert send["process"]["serviceName"] == "novacron-region-a"
    assert merge["process"]["serviceName"] == "novacron-region-b"
    assert merge["references"][0]["spanID"] == send["spanID"]
    assert _tag(merge, "vm") == "vm-1"
