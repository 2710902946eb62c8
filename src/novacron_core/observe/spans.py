"""The span maker a sans-IO machine is given: protocol logic names spans and passes trace
carriers along as data; the maker (injected at the runtime edge) decides what a span is.

The machines (``region/machine.py``, ``sync/engine.py``) never import OpenTelemetry: they
call ``spans.span(name, parent, attributes)`` around the work a traced message causes and
put the carrier it yields into the messages that work sends. :data:`NO_SPANS` (the
default, and the simulator's) yields ``b""``, so nothing is carried; the runtime installs
``observe.tracing.OtelSpans`` when tracing is on.

A carrier is ``observe.tracing.to_carrier``'s 26 bytes (version, trace id, span id, flags)
or ``b""``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from typing import Protocol

Attributes = Mapping[str, str | int]


class SpanMaker(Protocol):
    def span(
        self, name: str, parent: bytes, attributes: Attributes
    ) -> AbstractContextManager[bytes]:
        """A span continuing ``parent`` (never a new trace: an empty parent gives no span)
        for the duration of the ``with`` block; yields the span's own carrier (``b""`` when
        nothing is recorded)."""
        ...


class NoSpans:
    @contextmanager
    def span(self, name: str, parent: bytes, attributes: Attributes) -> Iterator[bytes]:
        yield b""


NO_SPANS: SpanMaker = NoSpans()


class Carriers:
    """A bounded map of the carriers of traced items (oldest dropped first): only sampled
    work enters it, so at a low sampling ratio it stays nearly empty."""

    def __init__(self, limit: int = 4096) -> None:
        self.limit = limit
        self._items: dict[object, bytes] = {}

    def put(self, key: object, carrier: bytes) -> None:
        if not carrier:
            return
        self._items.pop(key, None)
        self._items[key] = carrier
        if len(self._items) > self.limit:
            del self._items[next(iter(self._items))]

    def get(self, key: object) -> bytes:
        return self._items.get(key, b"") if self._items else b""

    def pop(self, key: object) -> bytes:
        return self._items.pop(key, b"") if self._items else b""

    def __len__(self) -> int:
        return len(self._items)
