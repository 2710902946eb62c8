"""Tracing helpers: configuration from OTEL_* variables, W3C carriers for headers and
protocol messages, the quiet exporter, JSON logs carrying trace ids."""

from __future__ import annotations

import io
import json
import logging
from dataclasses import dataclass

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from novacron_core.codec import decode, encode, record
from novacron_core.observe import tracing
from novacron_core.observe.logs import JsonFormatter, setup_logging


@record(type_id=64_017)
@dataclass(frozen=True)
class Replicated:
    """A stand-in for a protocol message with a trace field (the real ones: Gossip.traces
    and Push.traces, tests/sync/test_trace_carriers.py)."""

    vm: str
    trace: bytes = b""


@pytest.mark.parametrize(
    ("env", "on"),
    [
        ({}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"}, True),
        ({"OTEL_TRACES_EXPORTER": "console"}, True),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c"}, False),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c"}, False),
    ],
)
def test_tracing_is_off_unless_the_environment_asks(env: dict[str, str], on: bool) -> None:
    assert tracing.tracing_requested(env) is on
    if not on:
        assert tracing.setup_tracing("x", env=env) is None


@pytest.fixture
def spans() -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def test_a_message_carrier_continues_the_trace(
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = spans
    tr = provider.get_tracer("t")
    with tr.start_as_current_span("client write") as root:
        carrier = tracing.to_carrier()
    assert len(carrier) == tracing.CARRIER_LEN
    # the carrier rides in a codec record (as a protocol message field would) ...
    wire = encode(Replicated("a", carrier))
    got = decode(wire, Replicated).trace
    # ... and the receiving side's span joins the same trace as a child
    ctx = tracing.from_carrier(bytes(got))
    with tr.start_as_current_span("merge", context=ctx, kind=SpanKind.CONSUMER):
        pass
    client, merge = sorted(exporter.get_finished_spans(), key=lambda s: s.name)
    assert merge.context.trace_id == root.get_span_context().trace_id
    assert merge.parent is not None
    assert merge.parent.span_id == client.context.span_id


@pytest.mark.parametrize("bad", [b"", b"\x00" * 26, b"\x01" + b"\x11" * 25, b"\x00" * 3])
def test_empty_or_malformed_carriers_start_no_parent(bad: bytes) -> None:
    assert tracing.from_carrier(bad) is None


def test_nothing_is_carried_outside_a_sampled_span() -> None:
    assert tracing.to_carrier() == b""


def test_headers_round_trip(spans: tuple[TracerProvider, InMemorySpanExporter]) -> None:
    provider, _ = spans
    with provider.get_tracer("t").start_as_current_span("s") as span:
        headers: dict[str, str] = {}
        tracing.inject_headers(headers)
    tid = format(span.get_span_context().trace_id, "032x")
    assert headers["traceparent"].split("-")[1] == tid
    from opentelemetry import trace

    ctx = tracing.extract_headers(headers)
    assert trace.get_current_span(ctx).get_span_context().trace_id == int(tid, 16)


def test_quiet_exporter_reports_an_outage_once(caplog: pytest.LogCaptureFixture) -> None:
    class Down(InMemorySpanExporter):
        up = False

        def export(self, s):  # type: ignore[no-untyped-def]
            if not self.up:
                raise ConnectionRefusedError("no collector")
            return super().export(s)

    inner = Down()
    q = tracing._QuietExporter(inner, "http://nowhere:4318")
    with caplog.at_level(logging.INFO, logger="novacron_core.observe.tracing"):
        for _ in range(5):
            assert q.export([]) is SpanExportResult.FAILURE
        inner.up = True
        assert q.export([]) is SpanExportResult.SUCCESS
    msgs = [r.getMessage() for r in caplog.records]
    assert len([m for m in msgs if "cannot export" in m]) == 1
    assert len([m for m in msgs if "answers again" in m]) == 1


def test_json_logs_carry_the_trace_id(spans: tuple[TracerProvider, InMemorySpanExporter]) -> None:
    provider, _ = spans
    stream = io.StringIO()
    logger = logging.getLogger("novacron.test.json")
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger.addHandler(handler)
    try:
        with provider.get_tracer("t").start_as_current_span("s") as span:
            logger.warning("leader lost in %s", "eu", extra={"term": 7})
        logger.error("outside")
    finally:
        logger.removeHandler(handler)
    inside, outside = (json.loads(line) for line in stream.getvalue().splitlines())
    assert inside["message"] == "leader lost in eu"
    assert inside["term"] == 7
    assert inside["trace_id"] == format(span.get_span_context().trace_id, "032x")
    assert inside["level"] == "warning"
    assert inside["time"].endswith("Z")
    assert "trace_id" not in outside


def test_setup_logging_validates_the_format() -> None:
    root = logging.getLogger()
    saved = list(root.handlers), root.level
    try:
        assert setup_logging("json", stream=io.StringIO()) == "json"
        with pytest.raises(ValueError, match="json"):
            setup_logging("xml")
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])


@pytest.mark.parametrize(
    ("env", "ratio"),
    [
        ({}, None),
        ({"OTEL_TRACES_SAMPLER": "parentbased_always_on"}, None),
        (
            {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.01"},
            0.01,
        ),
        ({"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0"}, 0.0),
        ({"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "7"}, 1.0),
        ({"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "lots"}, 1.0),
        ({"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "nan"}, 1.0),
    ],
)
def test_ratio_samplers_are_decided_before_the_sdk(
    env: dict[str, str], ratio: float | None
) -> None:
    assert tracing.root_ratio(env) == ratio


def test_sample_root_keeps_about_the_ratio(monkeypatch: pytest.MonkeyPatch) -> None:
    import random

    random.seed(17)
    monkeypatch.setattr(tracing, "_root_ratio", 0.01)
    kept = sum(tracing.sample_root() for _ in range(100_000))
    assert 850 <= kept <= 1150  # binomial(100000, 0.01): sd about 31
    monkeypatch.setattr(tracing, "_root_ratio", 0.0)
    assert not any(tracing.sample_root() for _ in range(1000))
    monkeypatch.setattr(tracing, "_root_ratio", 1.0)
    assert all(tracing.sample_root() for _ in range(1000))


def test_protocol_spans_never_start_a_trace() -> None:
    from novacron_core.observe.spans import NO_SPANS

    with tracing.OtelSpans().span("sync.apply", b"", {}) as carrier:
        assert carrier == b""
    with NO_SPANS.span("sync.apply", b"\x00" * 26, {}) as carrier:
        assert carrier == b""
