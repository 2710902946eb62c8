"""Structured JSON logs carrying trace ids (opt-in: ``--log-format json`` or
``NOVACRON_LOG_FORMAT=json``; plain text otherwise).

One JSON object per line: ``time`` (RFC 3339, UTC), ``level``, ``logger``, ``message``,
``trace_id``/``span_id`` (hex, when the line is logged inside a span, so a log search
jumps to the trace in Jaeger and back), ``exception`` (the formatted traceback) and any
``extra={...}`` fields the call passed.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from typing import Any, TextIO

from opentelemetry import trace

# attributes every LogRecord has; anything else came from ``extra=`` and is kept
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}
TEXT_FORMAT = "%(asctime)s %(levelname)s %(message)s"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        sc = trace.get_current_span().get_span_context()
        if sc.is_valid:
            out["trace_id"] = format(sc.trace_id, "032x")
            out["span_id"] = format(sc.span_id, "016x")
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        for k, v in vars(record).items():
            if k not in _STANDARD and not k.startswith("_"):
                out[k] = v if isinstance(v, str | int | float | bool | None) else repr(v)
        return json.dumps(out, ensure_ascii=False)


def setup_logging(
    fmt: str | None = None, level: int = logging.INFO, stream: TextIO | None = None
) -> str:
    """Configure the root logger: ``json`` or ``text`` (default: ``NOVACRON_LOG_FORMAT``,
    else text). Returns the format used. Replaces handlers set up before."""
    chosen = (fmt or os.environ.get("NOVACRON_LOG_FORMAT") or "text").strip().lower()
    if chosen not in ("json", "text"):
        raise ValueError(f"log format: 'json' or 'text', not {chosen!r}")
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if chosen == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(level)
    return chosen
