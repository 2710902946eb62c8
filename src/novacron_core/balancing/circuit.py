"""Circuit breaking: a breaker per backend and concurrency limits per group.

The breaker (closed / open / half-open) watches the failure *rate* over a backend's last
``window`` requests, where outlier detection watches consecutive failures: a backend that
fails one request in two never strings five failures together, yet is clearly broken.
Open, it takes no requests for ``open_s``; then half-open, it takes up to
``half_open_max`` trial requests at a time: a success closes it, a failure re-opens it.

The limits (Envoy's circuit-breaker thresholds) bound what one group of backends may be
asked at once: requests in flight, requests waiting for a connection, and retries in
flight. Over a limit the request is refused at once with 503 and ``Retry-After``:
certainly not sent, so the client may retry safely.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from enum import Enum


class BreakerState(Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True, slots=True)
class CircuitSpec:
    window: int = 20
    failure_rate: float = 0.5
    min_requests: int = 10
    open_s: float = 5.0
    half_open_max: int = 1
    # per group
    max_requests: int = 1024
    max_pending: int = 1024
    max_retries: int = 64

    def __post_init__(self) -> None:
        if not 0 < self.failure_rate <= 1:
            raise ValueError("circuit.failure_rate: in (0, 1]")
        if self.window < 1 or self.min_requests < 1 or self.half_open_max < 1:
            raise ValueError("circuit: window, min_requests and half_open_max at least 1")
        if min(self.max_requests, self.max_pending, self.max_retries) < 0:
            raise ValueError("circuit: limits must not be negative")


@dataclass(slots=True)
class Breaker:
    spec: CircuitSpec
    state: BreakerState = BreakerState.CLOSED
    results: deque[bool] = field(default_factory=deque)  # True = failure
    failures: int = 0
    open_until: float = 0.0
    trials: int = 0
    opened: int = 0

    def allows(self) -> bool:
        if self.state is BreakerState.CLOSED:
            return True
        if self.state is BreakerState.HALF_OPEN:
            return self.trials < self.spec.half_open_max
        return False

    def on_start(self) -> None:
        if self.state is BreakerState.HALF_OPEN:
            self.trials += 1

    def on_result(self, now: float, failed: bool, counted: bool = True) -> bool:
        """Record a finished request; returns True when the state changed.
        ``counted=False``: the request ended without a verdict (neutral)."""
        spec = self.spec
        # the steady state: a success into a full window of successes changes nothing
        # (append one, drop one: both successes), so skip the deque work per request
        if (
            not failed
            and not self.failures
            and self.state is BreakerState.CLOSED
            and (len(self.results) >= spec.window or not counted)
        ):
            return False
        if self.state is BreakerState.HALF_OPEN:
            self.trials = max(0, self.trials - 1)
            if not counted:
                return False
            if failed:
                self._open(now)
            else:
                self.state = BreakerState.CLOSED
                self.results.clear()
                self.failures = 0
            return True
        if self.state is BreakerState.OPEN or not counted:
            return False  # a straggler from before it opened
        self.results.append(failed)
        self.failures += failed
        if len(self.results) > spec.window:
            self.failures -= self.results.popleft()
        n = len(self.results)
        if n >= spec.min_requests and self.failures >= spec.failure_rate * n:
            self._open(now)
            return True
        return False

    def _open(self, now: float) -> None:
        self.state = BreakerState.OPEN
        self.open_until = now + self.spec.open_s
        self.trials = 0
        self.opened += 1
        self.results.clear()
        self.failures = 0

    def on_tick(self, now: float) -> bool:
        if self.state is BreakerState.OPEN and now >= self.open_until:
            self.state = BreakerState.HALF_OPEN
            return True
        return False


@dataclass(slots=True)
class Limits:
    """In-flight counters of one group against the spec's limits."""

    spec: CircuitSpec
    requests: int = 0
    pending: int = 0
    retries: int = 0
    overflows: int = 0

    def try_request(self, retry: bool) -> str | None:
        """Admit one request (a retry also counts against ``max_retries``); returns why
        not, or None when admitted."""
        if self.requests >= self.spec.max_requests:
            self.overflows += 1
            return "too many requests in flight to this region"
        if retry and self.retries >= self.spec.max_retries:
            self.overflows += 1
            return "retry limit reached for this region"
        self.requests += 1
        if retry:
            self.retries += 1
        return None

    def done(self, retry: bool) -> None:
        self.requests = max(0, self.requests - 1)
        if retry:
            self.retries = max(0, self.retries - 1)

    def try_pending(self) -> bool:
        if self.pending >= self.spec.max_pending:
            self.overflows += 1
            return False
        self.pending += 1
        return True

    def pending_done(self) -> None:
        self.pending = max(0, self.pending - 1)
