"""A node's observability, mounted on its aiohttp app with one call: :func:`attach`.

It adds
- the request middleware (latency histogram by op/status class, server spans),
- a sampler task (every ``interval_s``) that feeds the health window and the anomaly
  detectors from the node's state, and exports ``novacron_health_score``,
  ``novacron_health_component_ratio{component}``, ``novacron_anomaly_score{stream}`` and
  ``novacron_anomaly_detections_total{stream}``,
- routes: ``GET /v1/observe/health`` (score and breakdown), ``GET /v1/observe/forecast``
  (capacity forecast from the node's stored history), and the ``/debug`` sub-app
  (``/debug/profile/cpu?seconds=N``, ``/debug/profile/memory``) unless
  ``NOVACRON_DEBUG_API=false``.

The node is read through :class:`NodeView` (a few attributes), so the same glue serves
whatever process shape the node takes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from aiohttp import web

from novacron_core.consensus.interface import LEADER, GroupStatus
from novacron_core.observe import anomaly, forecast, profiling, slo
from novacron_core.observe.health import COMPONENTS, HealthWindow
from novacron_core.observe.http import Stats, observe_middleware
from novacron_core.observe.metrics import Family

log = logging.getLogger(__name__)
STREAMS = ("write_latency", "error_ratio", "replication_lag")
HISTORY_FILE = "observe/history.jsonl"
HISTORY_EVERY_S = 3600.0
HISTORY_MAX_LINES = 24 * 400  # 400 days of hourly points, compacted when doubled
OBSERVER_KEY = web.AppKey("novacron_observer", object)


class NodeView(Protocol):
    """What the observer reads from a node (runtime.node.NodeServer has all of it): the
    group's status document, whatever the protocol, and the state machine's keys."""

    metrics: Any  # runtime.metrics.NodeMetrics
    settings: Any  # runtime.settings.NodeSettings
    kv: Any  # consensus.kv.KVStore (its ``data``)

    def status(self) -> GroupStatus: ...


def _flag(name: str, default: bool) -> bool:
    v = os.environ.get(name)
    if v is None:
        return default
    return v.strip().lower() not in ("0", "false", "no", "off")


@dataclass
class Observer:
    node: NodeView
    interval_s: float = 5.0

    def __post_init__(self) -> None:
        m = self.node.metrics
        self.stats = Stats()
        self.window = HealthWindow(window_s=300.0)
        self.burn = slo.LocalBurn()
        self.detectors = {s: anomaly.RobustDetector() for s in STREAMS}
        self.health = m.set.gauge("novacron_health_score", "Regional health score 0-100")
        self.component: Family = m.set.gauge(
            "novacron_health_component_ratio",
            "Health score components, 0..1 (leader, replication, errors, links, conflicts)",
            {"component": COMPONENTS},
        )
        self.anomaly_score = m.set.gauge(
            "novacron_anomaly_score", "Online anomaly score of a stream, 0..1", {"stream": STREAMS}
        )
        self.anomalies = m.set.counter(
            "novacron_anomaly_detections", "Anomalies flagged per stream", {"stream": STREAMS}
        )
        for s in STREAMS:  # every series exists from the first scrape
            self.anomaly_score.labels(s).set(0.0)
            self.anomalies.labels(s).inc(0)
        self.last_verdicts: dict[str, anomaly.Verdict] = {}
        self.requests_total = 0
        self.errors_total = 0
        self._last_history = 0.0

    # ------------------------------------------------------------ sampling

    @staticmethod
    def _lag_and_links(st: GroupStatus) -> tuple[float | None, float | None]:
        if st.role == LEADER:
            others = [f for n, f in st.followers.items() if n != st.id]
            if not others:
                return 0.0, None
            lag = max(st.last_index - f.match for f in others)
            down = sum(1 for f in others if not f.streaming) / len(others)
            return float(lag), down
        return float(st.lag), (0.0 if st.leader is not None else 1.0)

    def sample(self, now: float) -> None:
        st = self.node.status()
        requests, errors, write_s, writes = self.stats.take()
        self.requests_total += requests
        self.errors_total += errors
        lag, links_down = self._lag_and_links(st)
        t = self.stats
        self.burn.observe(now, slo.Counts(t.total, t.total_errors, t.writes_ok, t.writes_slow))
        self.window.observe(
            now,
            leader_present=st.leader is not None,
            elections=float(st.elections),
            requests=float(self.requests_total),
            errors=float(self.errors_total),
            lag_entries=lag,
            links_down_ratio=links_down,
        )
        result = self.window.score()
        self.health.set(result.score)
        for c in result.components:
            if c.score is not None:
                self.component.labels(c.name).set(c.score)
        streams: dict[str, float | None] = {
            "write_latency": (write_s / writes) if writes else None,
            "error_ratio": (errors / requests) if requests else None,
            "replication_lag": lag,
        }
        for name, value in streams.items():
            if value is None:
                continue
            v = self.detectors[name].update(value)
            self.last_verdicts[name] = v
            self.anomaly_score.labels(name).set(v.score)
            if v.alert:
                self.anomalies.labels(name).inc()
                log.warning("anomaly: %s = %.6g (z %.1f)", name, value, v.z)

    def record_history(self, wall: float) -> None:
        """Append one capacity sample to the node's history file (hourly)."""
        if wall - self._last_history < HISTORY_EVERY_S:
            return
        self._last_history = wall
        point = {
            "t": wall,
            "log_index": self.node.status().last_index,
            "keys": len(getattr(self.node.kv, "data", {}) or {}),
            "requests_total": self.requests_total,
        }
        path = Path(self.node.settings.data_dir) / HISTORY_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as f:
            f.write(json.dumps(point) + "\n")
        _compact(path)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                self.sample(loop.time())
                self.record_history(time.time())
            except Exception:
                log.exception("observe sampler failed (continuing)")

    # ------------------------------------------------------------ handlers

    async def health_handler(self, request: web.Request) -> web.Response:
        body = self.window.score().as_dict()
        body["inputs"] = _inputs_dict(self.window)
        body["anomalies"] = {
            k: {"score": round(v.score, 4), "z": round(v.z, 2)}
            for k, v in self.last_verdicts.items()
        }
        body["region"] = self.node.settings.region
        body["node"] = self.node.settings.node_id
        body["slos"] = self.burn.rates(asyncio.get_running_loop().time())
        return web.json_response(body)

    async def forecast_handler(self, request: web.Request) -> web.Response:
        """``?metric=log_index|keys|requests_total&horizons=30,60,90``."""
        return await forecast_response(
            Path(self.node.settings.data_dir) / HISTORY_FILE,
            request.query.get("metric", "keys"),
            request.query.get("horizons", "30,60,90"),
        )


def _inputs_dict(window: HealthWindow) -> dict[str, Any]:
    i = window.inputs()
    return {
        "leader_present": i.leader_present,
        "elections": i.elections,
        "lag_entries": i.lag_entries,
        "error_ratio": i.error_ratio,
        "links_down_ratio": i.links_down_ratio,
        "conflicts_per_s": i.conflicts_per_s,
    }


def _compact(path: Path) -> None:
    with open(path) as f:
        lines = f.readlines()
    if len(lines) > 2 * HISTORY_MAX_LINES:
        tmp = path.with_suffix(".tmp")
        tmp.write_text("".join(lines[-HISTORY_MAX_LINES:]))
        tmp.replace(path)


def _problem(status: int, title: str, field: str | None = None) -> web.Response:
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status}
    if field:
        body["field"] = field
    return web.json_response(body, status=status, content_type="application/problem+json")


HISTORY_METRICS = ("log_index", "keys", "requests_total")


async def forecast_response(path: Path, metric: str, horizons_q: str) -> web.Response:
    """The forecast route's logic, shared by the node and tests."""
    if metric not in HISTORY_METRICS:
        return _problem(422, f"metric: one of {', '.join(HISTORY_METRICS)}", "metric")
    try:
        horizons = sorted({int(h) for h in horizons_q.split(",") if h.strip()})
    except ValueError:
        return _problem(422, "horizons: comma-separated whole days, e.g. 30,60,90", "horizons")
    if not horizons or horizons[0] < 1 or horizons[-1] > 366:
        return _problem(422, "horizons: between 1 and 366 days", "horizons")
    try:
        result = await asyncio.get_running_loop().run_in_executor(
            None, _forecast_from_file, path, metric, horizons
        )
    except forecast.ForecastUnavailable as e:
        # the request was fine; the history is too short (or statsmodels is missing)
        return _problem(409, str(e))
    return web.json_response(result.as_dict())


def read_history(path: Path, metric: str) -> list[tuple[float, float]]:
    samples: list[tuple[float, float]] = []
    if path.exists():
        for line in path.read_text().splitlines():
            with contextlib.suppress(ValueError, KeyError, TypeError):
                point = json.loads(line)
                samples.append((float(point["t"]), float(point[metric])))
    return samples


def _forecast_from_file(path: Path, metric: str, horizons: list[int]) -> forecast.Forecast:
    return forecast.forecast(metric, read_history(path, metric), horizons)


def debug_app() -> web.Application:
    """``/debug`` sub-app: CPU and memory profiles on demand."""
    app = web.Application()

    async def cpu(request: web.Request) -> web.Response:
        try:
            seconds = float(request.query.get("seconds", "10"))
        except ValueError:
            return _problem(422, "seconds: a number", "seconds")
        mode = request.query.get("mode", "auto")
        if mode not in ("auto", "py-spy", "cprofile"):
            return _problem(422, "mode: auto, py-spy or cprofile", "mode")
        try:
            prof = await profiling.cpu_profile(seconds, mode)  # type: ignore[arg-type]
        except ValueError as e:
            return _problem(422, str(e), "seconds" if "seconds" in str(e) else "mode")
        except profiling.ProfileBusy as e:
            return web.json_response(
                {"title": str(e), "status": 429}, status=429, headers={"Retry-After": "5"}
            )
        except PermissionError as e:
            return _problem(409, str(e), "mode")
        return web.json_response(prof.as_dict())

    async def memory(request: web.Request) -> web.Response:
        try:
            top = int(request.query.get("top", "25"))
        except ValueError:
            return _problem(422, "top: a whole number", "top")
        stop = request.query.get("stop", "false").lower() == "true"
        snap = await asyncio.get_running_loop().run_in_executor(
            None, lambda: profiling.memory_snapshot(max(1, min(top, 200)), stop)
        )
        return web.json_response(snap)

    app.router.add_get("/profile/cpu", cpu)
    app.router.add_get("/profile/memory", memory)
    return app


def attach(app: web.Application, node: NodeView, interval_s: float | None = None) -> Observer:
    """Mount the node's observability on ``app`` (before it starts)."""
    every = interval_s or float(os.environ.get("NOVACRON_OBSERVE_INTERVAL_S", "5"))
    obs = Observer(node, every)
    app[OBSERVER_KEY] = obs
    # outermost, so it sees every answer (the 429s and mapped errors of inner middlewares too)
    app.middlewares.insert(0, observe_middleware(node.metrics, obs.stats))
    app.router.add_get("/v1/observe/health", obs.health_handler)
    app.router.add_get("/v1/observe/forecast", obs.forecast_handler)
    if _flag("NOVACRON_DEBUG_API", True):
        app.add_subapp("/debug", debug_app())

    async def sampler(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(obs.run())
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    app.cleanup_ctx.append(sampler)
    return obs
