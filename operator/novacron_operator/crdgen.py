"""Generate CustomResourceDefinitions from the pydantic models (``make crds``).

Pydantic emits JSON Schema; Kubernetes wants a *structural* OpenAPI v3 subset: no ``$ref``,
no ``anyOf`` with null, no ``title``, no ``additionalProperties: false`` beside
``properties``. ``structural()`` turns one into the other; everything else (bounds,
patterns, enums, defaults, CEL rules) passes through unchanged.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from novacron_operator import GROUP, VERSION, models, schema
from novacron_operator.capabilities import available

Json = dict[str, Any]

READY = '.status.conditions[?(@.type=="Ready")].status'
AGE: Json = {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}

KINDS: list[Json] = [
    {
        "kind": "NovaCronCluster",
        "plural": "novacronclusters",
        "short": ["ncc", "nccluster"],
        "spec": models.NovaCronClusterSpec,
        "status": models.NovaCronClusterStatus,
        "doc": "A NovaCron deployment: version, defaults for its regions, TLS, monitoring.",
        "columns": [
            {"name": "Ready", "type": "string", "jsonPath": READY},
            {"name": "Version", "type": "string", "jsonPath": ".spec.version"},
            {"name": "Regions", "type": "integer", "jsonPath": ".status.regions"},
            {"name": "Protocol", "type": "string", "jsonPath": ".spec.regionDefaults.protocol"},
            AGE,
        ],
    },
    {
        "kind": "NovaCronRegion",
        "plural": "novacronregions",
        "short": ["ncr", "ncregion"],
        "spec": models.NovaCronRegionSpec,
        "status": models.NovaCronRegionStatus,
        "doc": "One region hosted in this Kubernetes cluster: a consensus group of nodes, "
        "DWCP agents on the region's nodes and an autoscaled gateway.",
        "scale": True,
        # {name}-peers is a Service (RFC 1035: a letter first, 63 at most) and pods carry
        # controller-revision-hash: {name}-{10 characters}, a label value (63 at most)
        "name": (schema.RFC1035_LABEL, schema.REGION_NAME_MAX),
        "columns": [
            {"name": "Ready", "type": "string", "jsonPath": READY},
            {"name": "Region", "type": "string", "jsonPath": ".spec.regionName"},
            {"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas"},
            {"name": "Available", "type": "integer", "jsonPath": ".status.readyReplicas"},
            {"name": "Leader", "type": "string", "jsonPath": ".status.leader"},
            {"name": "Term", "type": "integer", "jsonPath": ".status.term"},
            {"name": "Protocol", "type": "string", "jsonPath": ".status.protocol"},
            AGE,
        ],
    },
    {
        "kind": "DWCPFederation",
        "plural": "dwcpfederations",
        "short": ["dwcp", "fed"],
        "spec": models.DWCPFederationSpec,
        "status": models.DWCPFederationStatus,
        "doc": "How regions talk: member regions (local or remote), gossip, anti-entropy, "
        "replication mode, conflict policies and failover policy.",
        "columns": [
            {"name": "Ready", "type": "string", "jsonPath": READY},
            {"name": "Members", "type": "integer", "jsonPath": ".status.readyMembers"},
            {"name": "Replication", "type": "string", "jsonPath": ".spec.replication.mode"},
            {"name": "Conflicts", "type": "string", "jsonPath": ".spec.conflictPolicies.default"},
            AGE,
        ],
    },
]


def structural(node: Any, defs: Json) -> Any:
    if isinstance(node, list):
        return [structural(n, defs) for n in node]
    if not isinstance(node, dict):
        return node
    node = dict(node)
    if "$ref" in node:
        target = defs[node.pop("$ref").rsplit("/", 1)[1]]
        node = {**target, **node}  # field-level description/default win over the model's
    if "allOf" in node and len(node["allOf"]) == 1:
        node = {**node.pop("allOf")[0], **node}
        return structural(node, defs)
    if "anyOf" in node:
        branches = [b for b in node.pop("anyOf") if b.get("type") != "null"]
        if len(branches) != 1:
            raise ValueError(f"unsupported union in schema: {branches}")
        node = {**branches[0], **node}
        if node.get("default", 0) is None:
            del node["default"]
        return structural(node, defs)
    for key in ("title", "$defs", CAPABILITY):
        node.pop(key, None)
    if node.get("additionalProperties") is False:
        del node["additionalProperties"]
    out: Json = {}
    for key, value in node.items():
        if key == "properties":
            out[key] = {
                k: structural(v, defs)
                for k, v in value.items()
                if CAPABILITY not in v or available(v[CAPABILITY])
            }
        elif key in ("items", "additionalProperties"):
            out[key] = structural(value, defs)
        else:
            out[key] = value
    return out


CAPABILITY = "x-novacron-capability"


def name_rules(pattern: str, limit: int) -> list[Json]:
    """CEL on metadata.name: names the operator could not turn into valid child names are
    refused by the API server, not retried by the operator."""
    return [
        {
            "rule": f"size(self.metadata.name) <= {limit}",
            "message": f"metadata.name must be at most {limit} characters (the names of the "
            "objects the operator derives from it must stay valid)",
        },
        {
            "rule": f"self.metadata.name.matches('{pattern}')",
            "message": f"metadata.name must match {pattern} (lower-case letters, digits and "
            "'-'; no dots: it becomes part of Service, pod and label names)",
        },
    ]


def schema_of(model: type[BaseModel]) -> Json:
    raw = model.model_json_schema(by_alias=True)
    result: Json = structural(raw, raw.get("$defs", {}))
    return result


def crd(entry: Json) -> Json:
    kind: str = entry["kind"]
    spec = schema_of(entry["spec"])
    spec["description"] = entry["doc"]
    status = schema_of(entry["status"])
    status["description"] = f"Observed state of the {kind}, written by the operator."
    subresources: Json = {"status": {}}
    if entry.get("scale"):
        subresources["scale"] = {
            "specReplicasPath": ".spec.replicas",
            "statusReplicasPath": ".status.replicas",
            "labelSelectorPath": ".status.selector",
        }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{entry['plural']}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": entry["plural"],
                "singular": kind.lower(),
                "shortNames": entry["short"],
                "categories": ["novacron"],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": subresources,
                    "additionalPrinterColumns": entry["columns"],
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": entry["doc"],
                            "x-kubernetes-validations": name_rules(
                                *entry.get("name", (schema.DNS_LABEL, schema.OBJECT_NAME_MAX))
                            ),
                            "required": ["spec"],
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                "spec": spec,
                                "status": status,
                            },
                        }
                    },
                }
            ],
        },
    }


def render() -> dict[str, str]:
    """File name -> YAML text for every CRD."""
    header = "# Generated from operator/novacron_operator/models.py by `make crds`; do not edit.\n"
    return {
        f"{GROUP}_{e['plural']}.yaml": header + yaml.safe_dump(crd(e), sort_keys=False, width=100)
        for e in KINDS
    }


def all_crds() -> list[Json]:
    return [crd(e) for e in KINDS]


def main(argv: list[str]) -> int:
    out = Path(argv[1] if len(argv) > 1 else "crds")
    out.mkdir(parents=True, exist_ok=True)
    for name, text in render().items():
        (out / name).write_text(text)
        print(out / name)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
