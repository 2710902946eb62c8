"""The chart's tracing stack (OTel Collector -> Jaeger v2), switched on by values: valid,
restricted, wired together, and running the Jaeger configuration the tests run."""

from __future__ import annotations

import kubernetes_validate
import yaml

from tests.deploy.tools import CHART, assert_restricted, pod_specs, require_tool, run

from .tools import ROOT


def render(*sets: str) -> list[dict]:  # type: ignore[type-arg]
    helm = require_tool("helm")
    cmd = [helm, "template", "nc", str(CHART), "--kube-version", "1.36.0"]
    for s in sets:
        cmd += ["--set", s]
    return [o for o in yaml.safe_load_all(run(cmd).stdout) if o]


def test_collector_and_jaeger_render_valid_restricted_and_wired() -> None:
    objs = render("monitoring.otelCollector.enabled=true", "monitoring.jaeger.enabled=true")
    named = {(o["kind"], o["metadata"]["name"]) for o in objs}
    for kind in ("ConfigMap", "Deployment", "Service"):
        assert (kind, "nc-novacron-otel-collector") in named
        assert (kind, "nc-novacron-jaeger") in named
    for o in objs:
        if o["apiVersion"] in ("v1", "apps/v1"):
            kubernetes_validate.validate(o, "1.36.0", strict=True)
    for name, spec in pod_specs(objs):
        assert_restricted(name, spec)
    by_name = {o["metadata"]["name"]: o for o in objs if o["kind"] == "ConfigMap"}
    collector = yaml.safe_load(by_name["nc-novacron-otel-collector"]["data"]["config.yaml"])
    assert collector["exporters"]["otlphttp"]["endpoint"] == "http://nc-novacron-jaeger:4318"
    jaeger = yaml.safe_load(by_name["nc-novacron-jaeger"]["data"]["config.yaml"])
    shipped = (ROOT / "charts/novacron/files/jaeger.yaml").read_text()
    assert jaeger == yaml.safe_load(shipped.replace("MAX_TRACES", "50000"))


def test_tracing_is_off_by_default_and_a_collector_alone_logs_spans() -> None:
    assert not [o for o in render() if "otel" in o["metadata"]["name"]]
    objs = render("monitoring.otelCollector.enabled=true")
    (cm,) = [
        o
        for o in objs
        if o["metadata"]["name"] == "nc-novacron-otel-collector" and o["kind"] == "ConfigMap"
    ]
    config = yaml.safe_load(cm["data"]["config.yaml"])
    assert config["service"]["pipelines"]["traces"]["exporters"] == ["debug"]
