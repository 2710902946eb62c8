"""crds/ is generated from models.py; these tests keep the two in step and the schemas sane."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from novacron_operator import crdgen, models

ROOT = Path(__file__).resolve().parents[2]


def test_crds_directory_matches_models() -> None:
    rendered = crdgen.render()
    on_disk = {p.name: p.read_text() for p in (ROOT / "crds").glob("*.yaml")}
    assert on_disk == rendered, "crds/ drifted from models.py: run `make crds`"


def walk(node: Any, path: str = "") -> list[tuple[str, dict[str, Any]]]:
    out: list[tuple[str, dict[str, Any]]] = []
    if isinstance(node, dict):
        out.append((path, node))
        for k, v in node.get("properties", {}).items():
            out += walk(v, f"{path}.{k}")
        for key in ("items", "additionalProperties"):
            if isinstance(node.get(key), dict):
                out += walk(node[key], f"{path}[{key}]")
    return out


@pytest.mark.parametrize("crd", crdgen.all_crds(), ids=lambda c: c["spec"]["names"]["kind"])
def test_schema_is_structural_every_node_typed_no_refs(crd: dict[str, Any]) -> None:
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for path, node in walk(schema):
        assert "type" in node, f"{path} has no type"
        for banned in ("$ref", "anyOf", "allOf", "oneOf", "title"):
            assert banned not in node, f"{path} carries {banned}"


def test_spec_fields_all_carry_descriptions() -> None:
    for crd in crdgen.all_crds():
        spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
        missing = [
            p
            for p, n in walk(spec)
            if p.count(".") == 1 and "[" not in p and "description" not in n
        ]
        assert not missing, missing


def test_region_has_scale_subresource_and_printer_columns() -> None:
    region = next(c for c in crdgen.all_crds() if c["spec"]["names"]["kind"] == "NovaCronRegion")
    version = region["spec"]["versions"][0]
    assert version["subresources"]["scale"]["specReplicasPath"] == ".spec.replicas"
    names = [c["name"] for c in version["additionalPrinterColumns"]]
    assert names == [
        "Ready",
        "Region",
        "Replicas",
        "Available",
        "Leader",
        "Term",
        "Protocol",
        "Age",
    ]
    assert region["spec"]["names"]["categories"] == ["novacron"]


def test_examples_parse_into_models() -> None:
    kinds = {
        "NovaCronCluster": models.NovaCronClusterSpec,
        "NovaCronRegion": models.NovaCronRegionSpec,
        "DWCPFederation": models.DWCPFederationSpec,
    }
    seen = 0
    for path in sorted((ROOT / "examples").rglob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            kinds[doc["kind"]].model_validate(doc["spec"])
            seen += 1
    assert seen >= 12


def test_a_region_leaves_unset_what_the_clusters_region_defaults_fill() -> None:
    spec = models.NovaCronRegionSpec.model_validate(
        {"clusterRef": {"name": "c"}, "regionName": "r", "zones": ["z"]}
    )
    assert (spec.replicas, spec.protocol, spec.storage.size) == (None, None, None)
    eff = models.effective(spec, models.RegionDefaults())
    assert (eff.replicas, eff.protocol, eff.size, eff.when_deleted) == (3, "raft", "10Gi", "Retain")
    crd = next(c for c in crdgen.all_crds() if c["spec"]["names"]["kind"] == "NovaCronRegion")
    props = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    for field in ("replicas", "protocol"):  # a CRD default would hide the cluster's
        assert "default" not in props["properties"][field]
    assert props["properties"]["storage"]["default"] == {}
