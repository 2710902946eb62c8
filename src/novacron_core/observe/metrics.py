"""Prometheus conventions every NovaCron component follows, in one helper.

- Names: ``novacron_<component>_<what>``, lower snake case, base units only (``_seconds``,
  ``_bytes``; never ``_ms`` or ``_percent``: a ratio is 0..1 and says ``_ratio``). Counters
  are exposed as ``..._total`` (prometheus_client appends it; declare the name without it).
- Labels: every label is declared with its allowed values, or capped at
  :data:`MAX_OPEN_VALUES` distinct values; anything beyond is folded into ``"other"``, so a
  bug or a hostile client can never blow up a time-series database.
- Every sample carries the node's ``region`` label (added at collection by
  :class:`RegionRegistry`, so components never pass it around).
- ``enabled=False`` turns every update into a no-op (the benchmark's "metrics off" arm).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Literal

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.metrics_core import Metric
from prometheus_client.samples import Sample

REGION_LABEL = "region"
OTHER = "other"
# Open labels (values not declared up front) keep at most this many distinct values.
MAX_OPEN_VALUES = 32
# Upper bound on the label combinations one metric family may have.
MAX_SERIES = 512

NAME = re.compile(r"^novacron_[a-z][a-z0-9]*(_[a-z0-9]+)+$")
NON_BASE_UNITS: tuple[str, ...] = ("_ms", "_milliseconds", "_millis", "_us", "_microseconds")
NON_BASE_UNITS += ("_ns", "_minutes", "_hours", "_kb", "_mb", "_gb", "_kilobytes", "_percent")
TIME_WORDS = ("latency", "duration", "delay", "age", "lag_time", "elapsed")
STATUS_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")
Kind = Literal["counter", "gauge", "histogram"]


class ConventionError(ValueError):
    """A metric definition breaks the conventions above (raised at definition time)."""


def check_name(name: str, kind: Kind) -> None:
    """Raise :class:`ConventionError` naming what is wrong with ``name``."""
    if not NAME.match(name):
        raise ConventionError(f"{name}: want novacron_<component>_<what>, lower snake case")
    if name.endswith(NON_BASE_UNITS):
        raise ConventionError(f"{name}: use base units (_seconds, _bytes, _ratio)")
    if kind == "counter" and name.endswith("_total"):
        raise ConventionError(f"{name}: declare counters without _total (it is appended)")
    if kind != "counter" and name.endswith("_total"):
        raise ConventionError(f"{name}: only counters end in _total")
    timed = kind == "histogram" and any(w in name for w in TIME_WORDS)
    if timed and not name.endswith("_seconds"):
        raise ConventionError(f"{name}: a time histogram ends in _seconds")


def status_class(code: int) -> str:
    """``503 -> "5xx"``: the bounded form of an HTTP status for labels."""
    return f"{code // 100}xx" if 100 <= code < 600 else OTHER


class Family:
    """One metric family with bounded labels; ``labels(...)`` returns the child to update.

    Disabled (``metric is None``), every method does nothing.
    """

    def __init__(
        self,
        metric: Counter | Gauge | Histogram | None,
        labelnames: Sequence[str],
        allowed: Mapping[str, frozenset[str] | None],
    ) -> None:
        self.metric = metric
        self.labelnames = tuple(labelnames)
        self._allowed = allowed
        self._seen: dict[str, set[str]] = {n: set() for n in labelnames}
        self._children: dict[tuple[str, ...], Family] = {}

    def _bound(self, name: str, value: str) -> str:
        allowed = self._allowed[name]
        if allowed is not None:
            return value if value in allowed else OTHER
        seen = self._seen[name]
        if value in seen:
            return value
        if len(seen) >= MAX_OPEN_VALUES:
            return OTHER
        seen.add(value)
        return value

    def labels(self, *values: str, **kv: str) -> Family:
        if values and kv:
            raise TypeError("labels(): positional or keyword values, not both")
        if values:
            if len(values) != len(self.labelnames):
                raise TypeError(f"labels(): {len(self.labelnames)} values expected")
            kv = dict(zip(self.labelnames, values, strict=True))
        if set(kv) != set(self.labelnames):
            raise TypeError(f"labels(): want exactly {sorted(self.labelnames)}")
        key = tuple(self._bound(n, str(kv[n])) for n in self.labelnames)
        child = self._children.get(key)
        if child is None:
            inner = self.metric.labels(*key) if self.metric is not None else None
            child = Family(inner, (), {})
            self._children[key] = child
        return child

    def inc(self, amount: float = 1.0) -> None:
        if self.metric is not None:
            self.metric.inc(amount)  # type: ignore[union-attr]

    def dec(self, amount: float = 1.0) -> None:
        if isinstance(self.metric, Gauge):
            self.metric.dec(amount)

    def set(self, value: float) -> None:
        if isinstance(self.metric, Gauge):
            self.metric.set(value)

    def observe(self, value: float) -> None:
        if isinstance(self.metric, Histogram):
            self.metric.observe(value)


class RegionRegistry(CollectorRegistry):
    """A registry whose every exposed sample carries ``region="<this node's region>"``."""

    def __init__(self, region: str) -> None:
        super().__init__(auto_describe=True)
        self.region = region

    def collect(self) -> Iterator[Metric]:
        for family in super().collect():
            out = Metric(family.name, family.documentation, family.type, family.unit)
            out.samples = [_with_region(s, self.region) for s in family.samples]
            yield out


def _with_region(s: Sample, region: str) -> Sample:
    if REGION_LABEL in s.labels:
        return s
    return s._replace(labels={**s.labels, REGION_LABEL: region})


class MetricSet:
    """Defines a component's metrics in a :class:`RegionRegistry` under the conventions."""

    def __init__(self, region: str, enabled: bool = True) -> None:
        self.registry = RegionRegistry(region)
        self.enabled = enabled
        self.names: dict[str, Kind] = {}

    def _family(
        self,
        kind: Kind,
        name: str,
        doc: str,
        labels: Mapping[str, Iterable[str] | None],
        buckets: Sequence[float] | None = None,
    ) -> Family:
        check_name(name, kind)
        if REGION_LABEL in labels:
            raise ConventionError(f"{name}: region is added to every sample; do not declare it")
        allowed = {n: (frozenset(v) if v is not None else None) for n, v in labels.items()}
        combos = 1
        for values in allowed.values():
            combos *= len(values) + 1 if values is not None else MAX_OPEN_VALUES + 1
        if combos > MAX_SERIES:
            raise ConventionError(f"{name}: up to {combos} label combinations (max {MAX_SERIES})")
        self.names[name] = kind
        names = list(labels)
        if not self.enabled:
            return Family(None, names, allowed)
        r = self.registry
        metric: Counter | Gauge | Histogram
        if kind == "counter":
            metric = Counter(name, doc, names, registry=r)
        elif kind == "gauge":
            metric = Gauge(name, doc, names, registry=r)
        elif buckets is not None:
            metric = Histogram(name, doc, names, registry=r, buckets=buckets)
        else:
            metric = Histogram(name, doc, names, registry=r)
        return Family(metric, names, allowed)

    def counter(
        self, name: str, doc: str, labels: Mapping[str, Iterable[str] | None] | None = None
    ) -> Family:
        return self._family("counter", name, doc, labels or {})

    def gauge(
        self, name: str, doc: str, labels: Mapping[str, Iterable[str] | None] | None = None
    ) -> Family:
        return self._family("gauge", name, doc, labels or {})

    def histogram(
        self,
        name: str,
        doc: str,
        labels: Mapping[str, Iterable[str] | None] | None = None,
        buckets: Sequence[float] | None = None,
    ) -> Family:
        return self._family("histogram", name, doc, labels or {}, buckets)


def lint_exposition(text: str, max_series: int = MAX_SERIES) -> list[str]:
    """Problems with a ``/metrics`` text against the conventions (empty: conforming).

    Checks NovaCron families only (``novacron_*``; the client library's own ``process_*``
    and ``python_*`` are left alone, except for the region label, which every sample has).
    """
    from prometheus_client.parser import text_string_to_metric_families

    problems: list[str] = []
    for family in text_string_to_metric_families(text):
        kind = family.type
        if family.name.startswith("novacron_") and kind in ("counter", "gauge", "histogram"):
            try:
                check_name(family.name, kind)  # type: ignore[arg-type]
            except ConventionError as e:
                problems.append(str(e))
        series: set[tuple[tuple[str, str], ...]] = set()
        for s in family.samples:
            if REGION_LABEL not in s.labels:
                problems.append(f"{s.name}: no region label")
                break
            series.add(tuple(sorted((k, v) for k, v in s.labels.items() if k != "le")))
        if len(series) > max_series:
            problems.append(f"{family.name}: {len(series)} series (max {max_series})")
    return problems
