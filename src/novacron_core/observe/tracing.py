"""Tracing with the OpenTelemetry SDK, configured by the standard ``OTEL_*`` variables.

Off by default: :func:`setup_tracing` installs an SDK tracer provider only when an OTLP
endpoint is given (``OTEL_EXPORTER_OTLP_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``)
or ``OTEL_TRACES_EXPORTER`` names ``otlp`` or ``console``, and not when
``OTEL_SDK_DISABLED=true``. Sampling is the SDK's own ``OTEL_TRACES_SAMPLER`` /
``OTEL_TRACES_SAMPLER_ARG`` (e.g. ``parentbased_traceidratio`` and ``0.01``); the service
name ``OTEL_SERVICE_NAME``; resource attributes ``OTEL_RESOURCE_ATTRIBUTES``.

Ratio sampling is decided here, before the SDK is called: with ``traceidratio`` or
``parentbased_traceidratio`` the SDK gets a parent-based always-on sampler and every place
that would start a root span asks :func:`sample_root` first (one ``random()``), so the
unsampled majority never pays for the SDK's ``start_span`` (sampler, ids, a non-recording
span). A span with a parent follows the parent's decision: ``traceidratio`` is treated as
``parentbased_traceidratio`` (a trace is kept whole or not at all).

Silent without a collector: spans leave through a batch processor on its own thread, and
export failures are reported once (a warning when the collector stops answering, one
line when it answers again), never per batch.

Trace context crosses process boundaries in W3C Trace Context form: HTTP headers
(``traceparent``) via :func:`inject_headers` / :func:`extract_headers`, and protocol
messages via a 26-byte field (:func:`to_carrier` / :func:`from_carrier`: version, trace id,
span id, flags; empty when nothing is being traced, so an untraced message pays one byte
of msgpack). ``tracestate`` and baggage are not carried inside protocol messages.
"""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Iterator, Mapping, MutableMapping, Sequence
from contextlib import contextmanager
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased, Sampler
from opentelemetry.trace import (
    NonRecordingSpan,
    Span,
    SpanContext,
    SpanKind,
    TraceFlags,
)

log = logging.getLogger(__name__)
TRACER_NAME = "novacron"
CARRIER_VERSION = 0
CARRIER_LEN = 26
_provider: TracerProvider | None = None
_root_ratio = 1.0  # share of root spans sampled (see sample_root)
RATIO_SAMPLERS = frozenset({"traceidratio", "parentbased_traceidratio"})


def tracing_requested(env: Mapping[str, str] | None = None) -> bool:
    """Whether the environment asks for tracing (see the module docstring)."""
    e = os.environ if env is None else env
    if e.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporters = {x.strip() for x in e.get("OTEL_TRACES_EXPORTER", "").lower().split(",")}
    if "none" in exporters:
        return False
    endpoint = e.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or e.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    return bool(endpoint) or bool(exporters & {"otlp", "console"})


def enabled() -> bool:
    """True once :func:`setup_tracing` installed a provider in this process."""
    return _provider is not None


def root_ratio(env: Mapping[str, str] | None = None) -> float | None:
    """The root sampling ratio the environment asks for; None when the sampler is not a
    ratio one (the SDK's own sampler is used then). A bad argument is 1.0, as the SDK's."""
    e = os.environ if env is None else env
    if e.get("OTEL_TRACES_SAMPLER", "").strip().lower() not in RATIO_SAMPLERS:
        return None
    try:
        ratio = float(e.get("OTEL_TRACES_SAMPLER_ARG", "1.0"))
    except ValueError:
        return 1.0
    return min(1.0, max(0.0, ratio)) if ratio == ratio else 1.0  # NaN: 1.0


def sample_root() -> bool:
    """Whether a new trace (a span without a parent) is to be recorded: ask before calling
    the SDK, which then records every root it is given (see the module docstring)."""
    return _root_ratio >= 1.0 or random.random() < _root_ratio


class _QuietExporter(SpanExporter):
    """Wraps an exporter: failures are logged once per outage, not once per batch."""

    def __init__(self, inner: SpanExporter, where: str) -> None:
        self.inner = inner
        self.where = where
        self.failing = False
        self.dropped = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            result = self.inner.export(spans)
        except Exception:
            result = SpanExportResult.FAILURE
        if result is SpanExportResult.SUCCESS:
            if self.failing:
                log.info("tracing: %s answers again (%d spans dropped)", self.where, self.dropped)
                self.failing, self.dropped = False, 0
        else:
            self.dropped += len(spans)
            if not self.failing:
                log.warning("tracing: cannot export spans to %s; dropping them", self.where)
                self.failing = True
        return result

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self.inner.force_flush(timeout_millis)


def _quiet_sdk_loggers() -> None:
    # The exporter logs every failed batch and retry at WARNING/ERROR; _QuietExporter
    # reports outages instead.
    for name in (
        "opentelemetry.exporter.otlp.proto.http.trace_exporter",
        "opentelemetry.exporter.otlp.proto.http",
        "opentelemetry.sdk.trace.export",
    ):
        logging.getLogger(name).setLevel(logging.CRITICAL)


def setup_tracing(
    service_name: str = "novacron",
    attributes: Mapping[str, str] | None = None,
    env: Mapping[str, str] | None = None,
) -> TracerProvider | None:
    """Install the SDK provider if the environment asks for tracing; None when it does not.

    ``attributes`` (e.g. ``novacron.region``, ``service.instance.id``) go on every span's
    resource; ``OTEL_RESOURCE_ATTRIBUTES`` and ``OTEL_SERVICE_NAME`` win over them.
    """
    global _provider
    e = os.environ if env is None else env
    if not tracing_requested(e):
        return None
    if _provider is not None:
        return _provider
    global _root_ratio
    attrs: dict[str, Any] = {"service.name": service_name, **(attributes or {})}
    resource = Resource.create(attrs)  # merges OTEL_RESOURCE_ATTRIBUTES / OTEL_SERVICE_NAME
    ratio = root_ratio(e)
    sampler: Sampler | None = None  # None: the SDK reads OTEL_TRACES_SAMPLER(_ARG) itself
    if ratio is not None:
        sampler, _root_ratio = ParentBased(ALWAYS_ON), ratio
    provider = TracerProvider(resource=resource, sampler=sampler)
    exporters = {x.strip() for x in e.get("OTEL_TRACES_EXPORTER", "otlp").lower().split(",")}
    _quiet_sdk_loggers()
    if "console" in exporters:
        provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    if "otlp" in exporters or not exporters - {"console", ""}:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        where = (
            e.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
            or e.get("OTEL_EXPORTER_OTLP_ENDPOINT")
            or "the default OTLP endpoint"
        )
        exporter = _QuietExporter(OTLPSpanExporter(), where)
        provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    _provider = provider
    global _tracer
    _tracer = None  # the next lookup gets the SDK's
    return provider


def shutdown_tracing(timeout_s: float = 2.0) -> None:
    """Flush what is buffered (bounded by ``timeout_s``) and stop the exporter threads."""
    global _provider
    if _provider is None:
        return
    _provider.force_flush(int(timeout_s * 1000))
    _provider.shutdown()
    _provider = None
    global _root_ratio
    _root_ratio = 1.0


_tracer: trace.Tracer | None = None


def tracer() -> trace.Tracer:
    """NovaCron's tracer (looked up once: the SDK builds a new one on every lookup)."""
    global _tracer
    if _tracer is None:
        _tracer = trace.get_tracer(TRACER_NAME)
    return _tracer


# ---------------------------------------------------------------- HTTP headers


def inject_headers(
    headers: MutableMapping[str, str], ctx: otel_context.Context | None = None
) -> None:
    """Add ``traceparent`` (and ``tracestate``) for the current or given context."""
    propagate.inject(headers, context=ctx)


def extract_headers(headers: Mapping[str, str]) -> otel_context.Context:
    """The context a request's ``traceparent`` carries (an empty one when absent)."""
    return propagate.extract(headers)


# ---------------------------------------------------------------- protocol messages


def to_carrier(span: Span | None = None) -> bytes:
    """The current (or given) span's context as 26 bytes for a message field; ``b""``
    when there is no valid, sampled span (nothing to continue on the other side)."""
    sc = (span or trace.get_current_span()).get_span_context()
    if not sc.is_valid or not sc.trace_flags.sampled:
        return b""
    return (
        bytes([CARRIER_VERSION])
        + sc.trace_id.to_bytes(16, "big")
        + sc.span_id.to_bytes(8, "big")
        + bytes([int(sc.trace_flags)])
    )


def from_carrier(carrier: bytes) -> otel_context.Context | None:
    """The remote parent a message carries, for ``tracer().start_as_current_span(...,
    context=...)``; None for an empty or malformed carrier (the span starts a new trace
    or is not traced: a bad carrier must never fail the message)."""
    if len(carrier) != CARRIER_LEN or carrier[0] != CARRIER_VERSION:
        return None
    trace_id = int.from_bytes(carrier[1:17], "big")
    span_id = int.from_bytes(carrier[17:25], "big")
    sc = SpanContext(trace_id, span_id, is_remote=True, trace_flags=TraceFlags(carrier[25]))
    if not sc.is_valid:
        return None
    return trace.set_span_in_context(NonRecordingSpan(sc))


@contextmanager
def continued(
    name: str,
    carrier: bytes,
    kind: SpanKind = SpanKind.CONSUMER,
    attributes: Mapping[str, Any] | None = None,
) -> Iterator[Span]:
    """A span continuing the trace a message carried (a root span, if :func:`sample_root`
    says so, when it carried none; else a non-recording one)."""
    parent = from_carrier(carrier)
    if parent is None and not sample_root():
        yield trace.INVALID_SPAN
        return
    with tracer().start_as_current_span(
        name, context=parent, kind=kind, attributes=dict(attributes or {})
    ) as span:
        yield span


class OtelSpans:
    """The span maker (``observe.spans.SpanMaker``) a node's machines get when tracing is
    on: a span per traced piece of protocol work, continuing the carrier its message
    brought; no span (and ``b""``) for work whose message carried none."""

    @contextmanager
    def span(
        self, name: str, parent: bytes, attributes: Mapping[str, str | int]
    ) -> Iterator[bytes]:
        ctx = from_carrier(parent) if parent else None
        if ctx is None:
            yield b""
            return
        with tracer().start_as_current_span(
            name, context=ctx, kind=SpanKind.INTERNAL, attributes=dict(attributes)
        ) as span:
            yield to_carrier(span)
