"""values-production.yaml through the operator's own builders (pure functions): the workloads
production gets — 5 consensus replicas spread across zones, a quorum-keeping PDB, resource
requests/limits, restricted node pods, and (once `novacron agent` exists) agents apart."""

from __future__ import annotations

from typing import Any

import pytest

from .tools import assert_restricted, helm_template, require_tool


@pytest.fixture(scope="module")
def production() -> list[dict[str, Any]]:
    return helm_template(require_tool("helm"), "values-production.yaml")


def built_regions(objs: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    from novacron_operator.builders import build_region
    from novacron_operator.builders.common import Owner
    from novacron_operator.builders.region import RegionContext
    from novacron_operator.models import NovaCronClusterSpec, NovaCronRegionSpec

    (cluster,) = [o for o in objs if o["kind"] == "NovaCronCluster"]
    ctx = RegionContext(
        NovaCronClusterSpec.model_validate(cluster["spec"]),
        cluster["metadata"]["name"],
        service_monitor_crd=True,
        agent_namespace="novacron-agents",
    )
    out = {}
    for region in (o for o in objs if o["kind"] == "NovaCronRegion"):
        name = region["metadata"]["name"]
        owner = Owner("NovaCronRegion", name, "novacron", f"uid-{name}")
        spec = NovaCronRegionSpec.model_validate(region["spec"])
        out[name] = build_region(owner, spec, ctx)
    return out


def one(objs: list[dict[str, Any]], kind: str, suffix: str = "") -> dict[str, Any]:
    (obj,) = [o for o in objs if o["kind"] == kind and o["metadata"]["name"].endswith(suffix)]
    return obj


def test_production_regions_build_into_ha_workloads(production: list[dict[str, Any]]) -> None:
    regions = built_regions(production)
    assert len(regions) == 3
    for name, objs in regions.items():
        sts = one(objs, "StatefulSet")
        assert sts["spec"]["replicas"] == 5, name
        pod = sts["spec"]["template"]["spec"]
        spread = pod["topologySpreadConstraints"]
        assert any(c["topologyKey"] == "topology.kubernetes.io/zone" for c in spread), name
        assert "podAntiAffinity" in pod["affinity"], name
        assert pod["nodeSelector"]["topology.kubernetes.io/region"] == name
        node = pod["containers"][0]
        assert node["resources"]["requests"]["cpu"] == "2", name
        assert node["resources"]["limits"]["memory"] == "4Gi", name
        assert_restricted(f"{name} node", pod)
        assert one(objs, "PodDisruptionBudget")["spec"]["minAvailable"] == 3  # quorum of 5
        # no `novacron gateway` / `novacron agent` yet: nothing that would run them
        assert not [
            o for o in objs if o["kind"] in ("Deployment", "DaemonSet", "HorizontalPodAutoscaler")
        ]


def test_the_agent_alone_gets_exactly_net_admin_and_host_network(
    production: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    from novacron_operator import capabilities

    # as it will be once the agent and gateway commands land
    monkeypatch.setattr(
        capabilities, "cli_commands", lambda: frozenset({"node", "agent", "gateway"})
    )
    monkeypatch.setattr(capabilities, "RENDERED", frozenset({"node", "agent", "gateway"}))
    for name, objs in built_regions(production).items():
        (ds,) = [o for o in objs if o["kind"] == "DaemonSet"]
        assert ds["metadata"]["namespace"] == "novacron-agents", name
        pod = ds["spec"]["template"]["spec"]
        assert pod["hostNetwork"] is True
        for c in pod["containers"]:
            caps = c["securityContext"]["capabilities"]
            assert caps["add"] == ["NET_ADMIN"], name
            assert caps["drop"] == ["ALL"], name
            assert c["securityContext"].get("privileged") in (None, False), name
        others = [o for o in objs if o["kind"] in ("StatefulSet", "Deployment")]
        for o in others:
            assert not o["spec"]["template"]["spec"].get("hostNetwork"), o["metadata"]["name"]
