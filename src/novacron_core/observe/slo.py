"""Service level objectives, their error budgets and multi-window, multi-burn-rate alerts.

Two SLOs per region, measured at the nodes' HTTP API (the client's view):

- **availability**: the share of client requests (reads and writes) not answered with a
  5xx, objective 99.9 % over 30 days (a 503 "no leader" or 504 "outcome unknown" spends
  budget; a 4xx is the client's mistake and does not);
- **write latency**: the share of acknowledged writes (2xx) that took at most 250 ms,
  objective 99 %.

Alerts follow the Google SRE workbook (chapter 5, "Alerting on SLOs", table 5-8): each
fires when the error budget burns at a given rate over a long window *and* still burns
over a short one (so it resets quickly once the cause is gone):

==========  ===========  ============  =========  ===================================
severity    long window  short window  burn rate  budget spent when it fires
==========  ===========  ============  =========  ===================================
critical    1h           5m            14.4       2 % of 30 days' budget in one hour
critical    6h           30m           6          5 % in six hours
warning     1d           2h            3          10 % in a day
warning     3d           6h            1          10 % in three days
==========  ===========  ============  =========  ===================================

The rules are generated (novacron_core.observe.rules) and checked by promtool.
"""

from __future__ import annotations

from dataclasses import dataclass

WINDOWS = ("5m", "30m", "1h", "2h", "6h", "1d", "3d", "30d")
# (severity, long window, short window, burn rate)
BURN_ALERTS = (
    ("critical", "1h", "5m", 14.4),
    ("critical", "6h", "30m", 6.0),
    ("warning", "1d", "2h", 3.0),
    ("warning", "3d", "6h", 1.0),
)
BY = "namespace, region"
ERROR_RATIO = "region:novacron_slo_errors:ratio_rate{window}"
BUDGET_REMAINING = "region:novacron_slo_error_budget_remaining:ratio"
WRITE_LATENCY_THRESHOLD_S = 0.25
# novacron_http_request_duration_seconds is labelled op=read|write|admin; SLOs count
# client operations only (admin and scrape traffic would dilute the ratio).
CLIENT_OPS = 'op=~"read|write"'
# the latency SLO counts acknowledged writes (a rejected write's latency is not the point)
WRITES_OK = 'op="write",code="2xx"'


@dataclass(frozen=True, slots=True)
class SLO:
    name: str
    objective: float  # e.g. 0.999
    description: str
    # PromQL of the bad-event ratio over a range; "{w}" is replaced by the window
    error_ratio: str

    @property
    def budget(self) -> float:
        """The share of events allowed to be bad (1 - objective)."""
        return 1.0 - self.objective

    def expr(self, window: str) -> str:
        return self.error_ratio.replace("{w}", window)


REQUESTS = "novacron_http_request_duration_seconds_count"
WRITE_BUCKET = "novacron_http_request_duration_seconds_bucket"
AVAILABILITY = SLO(
    "availability",
    0.999,
    "client requests answered without a 5xx",
    f'sum by ({BY}) (rate({REQUESTS}{{{CLIENT_OPS},code="5xx"}}[{{w}}]))'
    f" / sum by ({BY}) (rate({REQUESTS}{{{CLIENT_OPS}}}[{{w}}]))",
)
WRITE_LATENCY = SLO(
    "write_latency",
    0.99,
    f"writes acknowledged within {int(WRITE_LATENCY_THRESHOLD_S * 1000)} ms",
    f"1 - (sum by ({BY}) "
    f'(rate({WRITE_BUCKET}{{{WRITES_OK},le="{WRITE_LATENCY_THRESHOLD_S}"}}[{{w}}]))'
    f" / sum by ({BY}) (rate({REQUESTS}{{{WRITES_OK}}}[{{w}}])))",
)
SLOS = (AVAILABILITY, WRITE_LATENCY)


def burn_rate(error_ratio: float, slo: SLO) -> float:
    """How fast the budget burns: 1.0 spends exactly the budget over the SLO period."""
    return error_ratio / slo.budget


def budget_remaining(error_ratio_30d: float, slo: SLO) -> float:
    """The share of the 30-day error budget left (negative: overspent)."""
    return 1.0 - error_ratio_30d / slo.budget


def recording_rules(slo: SLO) -> list[dict[str, object]]:
    rules: list[dict[str, object]] = [
        {
            "record": ERROR_RATIO.format(window=w),
            "expr": slo.expr(w),
            "labels": {"slo": slo.name},
        }
        for w in WINDOWS
    ]
    rules.append(
        {
            "record": BUDGET_REMAINING,
            "expr": f'1 - {ERROR_RATIO.format(window="30d")}{{slo="{slo.name}"}} / {slo.budget:g}',
            "labels": {"slo": slo.name},
        }
    )
    return rules


def _ratio(window: str, slo: SLO) -> str:
    return f'{ERROR_RATIO.format(window=window)}{{slo="{slo.name}"}}'


def burn_condition(slo: SLO, long: str, short: str, rate: float) -> str:
    limit = f"({rate:g} * {slo.budget:g})"
    return f"({_ratio(long, slo)} > {limit} and {_ratio(short, slo)} > {limit})"


def alert_rules(slo: SLO) -> list[dict[str, object]]:
    """Two alerts per SLO (page and ticket), each the OR of its two window pairs."""
    out: list[dict[str, object]] = []
    title = slo.name.replace("_", " ").title().replace(" ", "")
    for severity, name, for_ in (("critical", "FastBurn", "2m"), ("warning", "SlowBurn", "15m")):
        pairs = [(lw, sw, r) for sev, lw, sw, r in BURN_ALERTS if sev == severity]
        expr = "\n  or\n".join(burn_condition(slo, lw, sw, r) for lw, sw, r in pairs)
        windows = " or ".join(f"{r:g}x over {lw} and {sw}" for lw, sw, r in pairs)
        out.append(
            {
                "alert": f"NovaCronSLO{title}{name}",
                "expr": expr,
                "for": for_,
                "labels": {"severity": severity, "slo": slo.name},
                "annotations": {
                    "summary": f"Region {{{{ $labels.region }}}} burns its {slo.name} "
                    f"error budget ({slo.description}, objective {slo.objective:.3%}).",
                    "description": f"Burn rate {windows}. At this pace the 30-day budget "
                    "runs out early; check the region's health score breakdown "
                    "(novacron status) and its leader.",
                },
            }
        )
    return out


# ---------------------------------------------------------------- one node's own view

LOCAL_WINDOWS_S = {"5m": 300.0, "1h": 3600.0, "6h": 21600.0}


@dataclass(frozen=True, slots=True)
class Counts:
    """Cumulative client-request counts of one node (what the SLIs are made of)."""

    requests: int = 0  # client reads and writes
    errors: int = 0  # of them answered 5xx
    writes_ok: int = 0  # writes answered 2xx
    writes_slow: int = 0  # of them slower than WRITE_LATENCY_THRESHOLD_S


class LocalBurn:
    """The SLOs' burn rates over the last 5m, 1h and 6h as one node saw its own client
    requests (sans-IO: the caller passes the time and the cumulative counts, every few
    seconds). What the operator puts in region status; the alerts use Prometheus's sums
    over every node of the region instead. A window longer than the node's life covers
    what there is (``covered_s`` says how much); no request in a window: ``None``."""

    def __init__(self, horizon_s: float = max(LOCAL_WINDOWS_S.values())) -> None:
        from collections import deque

        self.horizon_s = horizon_s
        self.samples: deque[tuple[float, Counts]] = deque()

    def observe(self, now: float, counts: Counts) -> None:
        self.samples.append((now, counts))
        # keep one sample at or before the horizon, so the longest window stays whole
        while len(self.samples) > 2 and self.samples[1][0] <= now - self.horizon_s:
            self.samples.popleft()

    def _since(self, now: float, window_s: float) -> tuple[float, Counts]:
        start = now - window_s
        base = self.samples[0]
        for t, c in self.samples:
            if t > start:
                break
            base = (t, c)
        return base

    def rates(self, now: float) -> dict[str, dict[str, object]]:
        """``{slo: {"objective", "burn_rate": {window: rate | None}, "covered_s": {...}}}``."""
        out: dict[str, dict[str, object]] = {}
        if not self.samples:
            return {
                s.name: {"objective": s.objective, "burn_rate": {}, "covered_s": {}} for s in SLOS
            }
        _, last = self.samples[-1]
        burns: dict[str, dict[str, float | None]] = {s.name: {} for s in SLOS}
        covered: dict[str, float] = {}
        for w, secs in LOCAL_WINDOWS_S.items():
            t0, first = self._since(now, secs)
            covered[w] = round(min(secs, now - t0), 1)
            n = last.requests - first.requests
            bad = last.errors - first.errors
            burns[AVAILABILITY.name][w] = burn_rate(bad / n, AVAILABILITY) if n > 0 else None
            n = last.writes_ok - first.writes_ok
            bad = last.writes_slow - first.writes_slow
            burns[WRITE_LATENCY.name][w] = burn_rate(bad / n, WRITE_LATENCY) if n > 0 else None
        for s in SLOS:
            out[s.name] = {
                "objective": s.objective,
                "burn_rate": burns[s.name],
                "covered_s": dict(covered),
            }
        return out
