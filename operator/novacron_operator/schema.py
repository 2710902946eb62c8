"""The CRD models' building blocks: name patterns, CEL rules, the base model and the
conditions every status carries (``models`` and ``conflict_models`` build on them)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
# names become Service names (RFC 1035: a letter first) and StatefulSet pod labels:
# ``controller-revision-hash: {name}-{10 chars}`` must stay within 63 characters
RFC1035_LABEL = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"
REGION_NAME_MAX = 52
OBJECT_NAME_MAX = 63
QUANTITY = r"^[0-9]+(\.[0-9]+)?(m|k|Ki|Mi|Gi|Ti|M|G|T)?$"
SEMVER = r"^v?[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?$"


def cel(rule: str, message: str, field_path: str | None = None) -> dict[str, str]:
    out = {"rule": rule, "message": message}
    if field_path:
        out["fieldPath"] = field_path
    return out


def rules(*items: dict[str, str]) -> dict[str, Any]:
    return {"x-kubernetes-validations": list(items)}


class Spec(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


def sub(model: type[Spec], description: str, **extra: Any) -> Any:
    """A nested object defaulted in full: the API server checks CEL rules against defaults
    without applying nested defaults first, so ``{}`` would fail them."""
    default = model().model_dump(by_alias=True, exclude_none=True)
    return Field(
        default_factory=model,
        description=description,
        json_schema_extra={"default": default, **extra},
    )


class ObjectRef(Spec):
    name: str = Field(
        description="Name of the referenced object in the same namespace.",
        pattern=DNS_LABEL,
        max_length=63,
    )


class Condition(Spec):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")
    type: str = Field(description="Condition type: Ready, Progressing or Degraded.")
    status: Literal["True", "False", "Unknown"] = Field(description="Condition status.")
    reason: str = Field(default="", description="CamelCase reason for the last transition.")
    message: str = Field(default="", description="Human-readable detail.")
    last_transition_time: str | None = Field(
        default=None,
        description="When status last changed (RFC 3339).",
        json_schema_extra={"format": "date-time"},
    )
    observed_generation: int | None = Field(default=None, description="Generation seen.")


class CommonStatus(Spec):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")
    observed_generation: int | None = Field(default=None, description="Last generation acted on.")
    conditions: list[Condition] = Field(
        default_factory=list,
        description="Ready, Progressing and Degraded conditions.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
