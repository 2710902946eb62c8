"""``DWCPFederation.spec.conflictPolicies`` is what the nodes read: the operator's model
accepts exactly the values ``novacron_core.conflict.policy`` accepts (the API server's
side, schema and CEL, is e2e/test_conflict_policies.py), and what it renders into
topology.json means the same policy to a node as the value written in the CRD."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from novacron_operator import crdgen
from novacron_operator.builders import Owner
from novacron_operator.builders.federation import topology
from novacron_operator.conflict_models import ConflictPolicies
from novacron_operator.models import DWCPFederationSpec
from novacron_operator.parents import unsupported
from pydantic import ValidationError

from novacron_core.conflict import policy
from tests.operator.policy_values import node_accepts, policies


def operator_accepts(raw: dict[str, Any]) -> bool:
    try:
        ConflictPolicies.model_validate(raw)
    except ValidationError:
        return False
    return True


@settings(max_examples=150, deadline=None)
@given(policies())
def test_the_operator_model_accepts_exactly_what_the_nodes_accept(raw: dict[str, Any]) -> None:
    assert operator_accepts(raw) == node_accepts(raw), raw
    if node_accepts(raw):
        rendered = ConflictPolicies.model_validate(raw).model_dump(by_alias=True, exclude_none=True)
        assert policy.parse(rendered) == policy.parse(raw), (raw, rendered)


FULL = {
    "writes": "multi",
    "default": "merge",
    "fallback": "lww",
    "rules": [
        {"field": "description", "strategy": "text"},
        {"field": "spec.*", "strategies": ["vote", "manual"]},
        {"field": "labels.owner", "kind": "*", "strategies": ["priority", "lww"]},
    ],
    "mustAgree": [["spec.cpus", "spec.memory_mib"]],
    "priority": {"regions": ["us-east1", "europe-west1"]},
}


def federation(conflict_policies: dict[str, Any]) -> DWCPFederationSpec:
    return DWCPFederationSpec.model_validate(
        {
            "clusterRef": {"name": "fleet"},
            "members": [{"name": "a", "endpoints": [{"host": "a", "port": 7000}]}],
            "conflictPolicies": conflict_policies,
        }
    )


def test_topology_json_carries_the_whole_policy_and_the_condition_says_it_is_applied() -> None:
    spec = federation(FULL)
    doc = topology(Owner("DWCPFederation", "global", "prod", "u"), spec)
    assert policy.parse(doc["conflictPolicies"]) == policy.parse(FULL)
    assert doc["conflictPolicies"]["rules"][1] == {
        "field": "spec.*",
        "kind": "vm",
        "strategies": ["vote", "manual"],
    }
    (cond,) = [c for c in unsupported(spec) if c.type == "ConflictPoliciesSupported"]
    assert (cond.status, cond.reason) == (True, "AppliedByNodes")
    assert "writes multi, default merge, fallback lww, 3 rules, 1 mustAgree" in cond.message
    # an old object (the four-strategy CRD's shape) still means the same
    old = {"default": "siblings", "rules": [{"field": "spec.cpus", "strategy": "manual"}]}
    assert policy.parse(
        topology(Owner("DWCPFederation", "g", "p", "u"), federation(old))["conflictPolicies"]
    ) == policy.parse(old)


@pytest.mark.parametrize(
    ("raw", "where"),
    [
        ({"rules": [{"field": "spec.", "strategy": "lww"}]}, "rules.0.field"),
        ({"rules": [{"field": "spec.*"}]}, "rules.0"),
        ({"default": ["vote", "lww"]}, "default"),  # a list: the node's file only
        ({"default": "priority"}, "priority"),
        ({"mustAgree": [["spec.cpus"]]}, "mustAgree.0"),
    ],
)
def test_a_value_the_nodes_would_refuse_is_refused_naming_the_field(
    raw: dict[str, Any], where: str
) -> None:
    with pytest.raises(ValidationError) as e:
        federation(raw)
    assert where in str(e.value), str(e.value)


def test_the_crd_schema_has_the_nodes_strategies_bounds_and_rules() -> None:
    (fed,) = [c for c in crdgen.all_crds() if c["spec"]["names"]["kind"] == "DWCPFederation"]
    spec = fed["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    cp = spec["properties"]["conflictPolicies"]
    assert cp["properties"]["default"]["enum"] == list(policy.STRATEGIES)
    assert cp["properties"]["writes"]["enum"] == ["home", "multi"]
    rule = cp["properties"]["rules"]["items"]
    assert rule["properties"]["field"]["pattern"] == policy.FIELD_GLOB
    assert rule["properties"]["strategies"]["items"]["enum"] == list(policy.STRATEGIES)
    assert rule["x-kubernetes-validations"], "strategy xor strategies"
    groups = cp["properties"]["mustAgree"]
    assert (groups["maxItems"], groups["items"]["minItems"]) == (policy.MAX_GROUPS, 2)
    assert cp["x-kubernetes-validations"][0]["fieldPath"] == ".priority"
