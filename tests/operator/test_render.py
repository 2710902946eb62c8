"""`novacron render`: the operator's own builders, offline, from a file of custom resources."""

from __future__ import annotations

from pathlib import Path

import yaml
from click.testing import CliRunner

from novacron_core.cli import main

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def render(*args: str, input: str | None = None) -> tuple[int, str]:
    res = CliRunner().invoke(main, ["render", *args], input=input)
    return res.exit_code, res.output


def test_render_three_region_example_gives_each_region_its_workloads() -> None:
    code, out = render(str(EXAMPLES / "three-region.yaml"), "-n", "prod")
    assert code == 0, out
    objs = list(yaml.safe_load_all(out))
    sts = {o["metadata"]["name"] for o in objs if o["kind"] == "StatefulSet"}
    assert sts == {"us-east", "eu-west", "ap-south"}
    assert {o["metadata"]["namespace"] for o in objs} == {"prod"}
    regions = {o["metadata"]["name"] for o in objs if o["kind"] == "StatefulSet"}
    pdbs = [o for o in objs if o["kind"] == "PodDisruptionBudget"]
    assert len(pdbs) == len(regions)
    # rendering is deterministic: the same input gives the same output
    assert render(str(EXAMPLES / "three-region.yaml"), "-n", "prod")[1] == out


def test_render_rejects_an_invalid_spec_naming_the_field() -> None:
    doc = """
apiVersion: novacron.io/v1alpha1
kind: NovaCronCluster
metadata: {name: fleet}
spec: {version: 0.1.0}
---
apiVersion: novacron.io/v1alpha1
kind: NovaCronRegion
metadata: {name: r1}
spec: {clusterRef: {name: fleet}, regionName: r1, replicas: "many"}
"""
    code, out = render("-", input=doc)
    assert code == 1
    assert "spec.replicas" in out


def test_render_says_which_cluster_is_missing() -> None:
    doc = """
apiVersion: novacron.io/v1alpha1
kind: NovaCronRegion
metadata: {name: r1}
spec: {clusterRef: {name: nowhere}, regionName: r1, zones: [r1-a]}
"""
    code, out = render("-", input=doc)
    assert code == 1
    assert "'nowhere'" in out
    assert "not in the input" in out


def test_render_of_a_file_without_novacron_resources_is_an_error() -> None:
    code, out = render("-", input="apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n")
    assert code == 1
    assert "no NovaCronCluster" in out


def test_render_gives_the_nodes_the_regions_protocol_and_refuses_adaptive() -> None:
    doc = """
apiVersion: novacron.io/v1alpha1
kind: NovaCronCluster
metadata: {name: fleet}
spec: {version: 0.1.0, regionDefaults: {protocol: %s}}
---
apiVersion: novacron.io/v1alpha1
kind: NovaCronRegion
metadata: {name: r1}
spec: {clusterRef: {name: fleet}, regionName: r1, zones: [a]%s}
"""
    code, out = render("-", input=doc % ("raft", ", protocol: multi-paxos"))
    assert code == 0, out
    (cm,) = [o for o in yaml.safe_load_all(out) if o["metadata"]["name"] == "r1-config"]
    assert '"protocol": "multi-paxos"' in cm["data"]["node.json"]
    for defaults, own in (("raft", ", protocol: adaptive"), ("adaptive", "")):
        code, out = render("-", input=doc % (defaults, own))
        assert code == 1
        assert "NovaCronRegion r1: protocol: adaptive is not available yet" in out
        assert "live switch" in out
