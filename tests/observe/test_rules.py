"""The shipped Prometheus rules: generated, valid for promtool, and behaving as the SRE
workbook's multi-window multi-burn-rate alerts should (promtool's own unit tests)."""

from __future__ import annotations

import yaml

from novacron_core.observe import dashboards, rules, slo

from .tools import DASHBOARDS, PROMTOOL_TESTS, ROOT, RULES, promtool, run


def test_rule_file_is_the_generated_one() -> None:
    assert RULES.read_text() == rules.render(), "run python -m novacron_core.observe.rules"


def test_dashboards_are_the_generated_ones() -> None:
    for name, text in dashboards.render().items():
        assert (DASHBOARDS / name).read_text() == text, (
            "run python -m novacron_core.observe.dashboards"
        )


def test_chart_embeds_the_rule_file() -> None:
    template = (ROOT / "charts/novacron/templates/monitoring.yaml").read_text()
    assert '.Files.Get "rules/novacron.rules.yaml"' in template


def test_promtool_checks_every_shipped_rule() -> None:
    proc = run([promtool(), "check", "rules", str(RULES)])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    n = sum(len(g["rules"]) for g in yaml.safe_load(RULES.read_text())["groups"])
    assert f"SUCCESS: {n} rules found" in proc.stdout


def test_promtool_unit_tests_pass() -> None:
    proc = run([promtool(), "test", "rules", PROMTOOL_TESTS.name], cwd=PROMTOOL_TESTS.parent)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


def test_promtool_unit_tests_can_fail() -> None:
    """The same tests against rules whose page thresholds (14.4x and 6x) are raised must
    fail: the tests really look at the burn-rate thresholds."""
    text = RULES.read_text().replace("(14.4 * 0.001)", "(900 * 0.001)")
    text = text.replace("(6 * 0.001)", "(900 * 0.001)")
    broken = PROMTOOL_TESTS.parent / "broken.rules.yaml"
    tests = PROMTOOL_TESTS.parent / "broken_test.yaml"
    try:
        broken.write_text(text)
        doc = yaml.safe_load(PROMTOOL_TESTS.read_text())
        doc["rule_files"] = [broken.name]
        tests.write_text(yaml.safe_dump(doc))
        proc = run([promtool(), "test", "rules", tests.name], cwd=tests.parent)
    finally:
        broken.unlink(missing_ok=True)
        tests.unlink(missing_ok=True)
    assert proc.returncode != 0
    assert "NovaCronSLOAvailabilityFastBurn" in proc.stdout + proc.stderr


def test_every_slo_has_a_page_and_a_ticket_over_the_workbook_windows() -> None:
    doc = yaml.safe_load(RULES.read_text())
    alerts = {r["alert"]: r for g in doc["groups"] for r in g["rules"] if "alert" in r}
    records = {r["record"] for g in doc["groups"] for r in g["rules"] if "record" in r}
    for s in slo.SLOS:
        for w in slo.WINDOWS:
            assert slo.ERROR_RATIO.format(window=w) in records
        pages = [a for a in alerts.values() if a["labels"].get("slo") == s.name]
        assert {a["labels"]["severity"] for a in pages} == {"critical", "warning"}
        exprs = "\n".join(a["expr"] for a in pages)
        for _, long, short, rate in slo.BURN_ALERTS:
            assert f"ratio_rate{long}" in exprs
            assert f"ratio_rate{short}" in exprs
            assert f"({rate:g} * {s.budget:g})" in exprs


def test_burn_rate_and_budget_arithmetic() -> None:
    assert slo.burn_rate(0.0144, slo.AVAILABILITY) == pytest_approx(14.4)
    assert slo.budget_remaining(0.0005, slo.AVAILABILITY) == pytest_approx(0.5)
    assert slo.budget_remaining(0.002, slo.AVAILABILITY) == pytest_approx(-1.0)


def pytest_approx(x: float) -> object:
    import pytest

    return pytest.approx(x)
