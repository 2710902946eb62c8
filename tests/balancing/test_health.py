"""Active checks, outlier ejection and the circuit breaker, each against its rules."""

from __future__ import annotations

import pytest

from novacron_core.balancing import (
    Breaker,
    BreakerState,
    CheckSpec,
    CircuitSpec,
    HealthChecker,
    Limits,
    Outcome,
    OutlierDetector,
    OutlierSpec,
    Verdict,
)


def checker(**kw: object) -> HealthChecker:
    spec = CheckSpec(**{"interval_s": 1.0, "unhealthy_interval_s": 0.5, "jitter": 0.0, **kw})  # type: ignore[arg-type]
    return HealthChecker(spec)


def test_a_new_backend_is_probed_at_once_and_healthy_after_its_first_success() -> None:
    h = checker()
    h.add(10.0, "a")
    assert not h.healthy("a")
    assert h.due(10.0) == ["a"]
    assert h.due(10.0) == []  # running: not handed out twice
    assert h.result(10.01, "a", Verdict.OK)
    assert h.healthy("a")
    assert h.next_due() == pytest.approx(11.01)


def test_fall_after_threshold_failures_rise_after_threshold_successes() -> None:
    h = checker(unhealthy_threshold=3, healthy_threshold=2)
    h.add(0.0, "a")
    h.due(0.0)
    h.result(0.0, "a", Verdict.OK)
    for t, expect in ((1.0, True), (2.0, True), (3.0, False)):
        assert h.due(t) == ["a"]
        h.result(t, "a", Verdict.FAILED, "timeout")
        assert h.healthy("a") is expect
    assert h.next_due() == pytest.approx(3.5)  # probed faster while down
    h.due(3.5)
    h.result(3.5, "a", Verdict.OK)
    assert not h.healthy("a")  # one success is not enough to come back
    h.due(4.5)
    h.result(4.5, "a", Verdict.OK)
    assert h.healthy("a")


def test_a_refused_connection_is_down_at_once_and_known_down_until_a_success() -> None:
    h = checker(unhealthy_threshold=5)
    h.add(0.0, "a")
    h.due(0.0)
    h.result(0.0, "a", Verdict.OK)
    assert h.passive_refused(0.2, "a")
    assert not h.healthy("a")
    assert h.known_down("a")
    h.due(1.0)
    h.result(1.0, "a", Verdict.OK)
    assert not h.known_down("a")


def test_nudge_moves_a_probe_forward() -> None:
    h = checker()
    h.add(0.0, "a")
    h.due(0.0)
    h.result(0.0, "a", Verdict.OK)
    assert h.due(0.3) == []
    h.nudge(0.3, "a")
    assert h.due(0.3) == ["a"]


def test_jitter_spreads_probes_deterministically() -> None:
    h = HealthChecker(CheckSpec(interval_s=1.0, jitter=0.5))
    for name in ("a", "b", "c", "d"):
        h.add(0.0, name)
        h.due(0.0)
        h.result(0.0, name, Verdict.OK)
    dues = [h.state[n].due for n in "abcd"]
    assert all(1.0 <= d <= 1.5 for d in dues)
    assert len(set(dues)) == 4


def test_no_checks_means_healthy_and_never_probed() -> None:
    h = HealthChecker(CheckSpec(kind="none"))
    h.add(0.0, "a")
    assert h.healthy("a")
    assert h.due(100.0) == []
    assert h.next_due() is None


def test_check_spec_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="interval"):
        CheckSpec(interval_s=0)
    with pytest.raises(ValueError, match="threshold"):
        CheckSpec(unhealthy_threshold=0)
    with pytest.raises(ValueError, match="custom"):
        CheckSpec(kind="custom")


# ---------------------------------------------------------------- outlier detection


def test_consecutive_5xx_eject_and_ejection_grows_with_repeats() -> None:
    o = OutlierDetector(OutlierSpec(consecutive_5xx=3, base_ejection_s=5.0, max_ejection_s=12.0))
    t = 0.0
    for expect in (5.0, 10.0, 12.0):  # base, 2 x base, capped
        for i in range(3):
            until = o.record(t, "a", Outcome.SERVER_ERROR, 4, 0)
            assert (until is not None) is (i == 2)
        assert until == pytest.approx(t + expect)
        assert o.ejected("a", t)
        t = until
        assert o.expire(t) == ["a"]
        assert not o.ejected("a", t)
        t += 1.0


def test_a_success_resets_the_count_and_neutral_answers_do_not() -> None:
    o = OutlierDetector(OutlierSpec(consecutive_gateway_failure=2))
    assert o.record(0.0, "a", Outcome.GATEWAY_FAILURE, 4, 0) is None
    assert o.record(0.1, "a", Outcome.SUCCESS, 4, 0) is None
    assert o.record(0.2, "a", Outcome.GATEWAY_FAILURE, 4, 0) is None
    assert o.record(0.3, "a", Outcome.NEUTRAL, 4, 0) is None  # 503 "no leader": no blame
    assert o.record(0.4, "a", Outcome.GATEWAY_FAILURE, 4, 0) is not None


def test_refused_ejects_at_once_but_never_past_the_maximum_share() -> None:
    o = OutlierDetector(OutlierSpec(max_ejection_percent=50.0))
    assert o.record(0.0, "a", Outcome.REFUSED, 4, 0) is not None
    assert o.record(0.0, "b", Outcome.REFUSED, 4, 1) is not None
    assert o.record(0.0, "c", Outcome.REFUSED, 4, 2) is None  # half of 4 already out
    # a group of one may still eject its one backend (Envoy: at least one)
    assert o.record(0.0, "x", Outcome.REFUSED, 1, 0) is not None


def test_a_backend_good_for_a_whole_max_ejection_starts_over() -> None:
    o = OutlierDetector(OutlierSpec(base_ejection_s=5.0, max_ejection_s=20.0))
    first = o.record(0.0, "a", Outcome.REFUSED, 3, 0)
    assert first == 5.0
    o.expire(5.0)
    assert o.record(100.0, "a", Outcome.REFUSED, 3, 0) == 105.0


# ---------------------------------------------------------------- circuit breaker


def test_breaker_opens_on_failure_rate_and_half_opens_after_the_timeout() -> None:
    b = Breaker(CircuitSpec(window=10, min_requests=4, failure_rate=0.5, open_s=2.0))
    for failed in (False, True, False):
        assert not b.on_result(0.0, failed)
    assert b.on_result(0.0, True)  # 2 of 4 failed
    assert b.state is BreakerState.OPEN
    assert not b.allows()
    assert not b.on_tick(1.9)
    assert b.on_tick(2.0)
    assert b.state is BreakerState.HALF_OPEN
    assert b.allows()
    b.on_start()
    assert not b.allows()  # one trial at a time
    assert b.on_result(2.1, failed=False)
    assert b.state is BreakerState.CLOSED


def test_a_failed_trial_reopens() -> None:
    b = Breaker(CircuitSpec(min_requests=1, failure_rate=1.0, open_s=1.0))
    b.on_result(0.0, True)
    b.on_tick(1.0)
    b.on_start()
    b.on_result(1.1, True)
    assert b.state is BreakerState.OPEN
    assert b.open_until == pytest.approx(2.1)
    assert b.opened == 2


def test_rate_not_run_length_a_flapping_backend_trips() -> None:
    b = Breaker(CircuitSpec(window=20, min_requests=10, failure_rate=0.5))
    tripped = [b.on_result(0.0, i % 2 == 0) for i in range(10)]
    assert tripped[-1]


def test_limits_bound_requests_and_retries() -> None:
    lim = Limits(CircuitSpec(max_requests=3, max_retries=1, max_pending=1))
    assert lim.try_request(retry=False) is None
    assert lim.try_request(retry=True) is None
    assert lim.try_request(retry=True) == "retry limit reached for this region"
    assert lim.try_request(retry=False) is None
    assert lim.try_request(retry=False) == "too many requests in flight to this region"
    lim.done(retry=True)
    assert lim.try_request(retry=True) is None
    assert lim.try_pending()
    assert not lim.try_pending()
    lim.pending_done()
    assert lim.try_pending()
    assert lim.overflows == 3
