"""What clients send to create and change VM records (the API's request bodies).

The record a region's group stores under ``vm/{id}`` is schema 2
(:mod:`novacron_core.conflict.record`: lifecycle, placement, NICs, a version vector);
:class:`VMRecord` is the schema-1 record older nodes wrote, still read (and upgraded).
Every write is prepared on top of what the region knows and committed with a
compare-and-swap on the exact bytes of the region's copy (``conflict/writes.py``), so
concurrent updates through different nodes never lose each other's effect.
"""

from __future__ import annotations

import json
from ipaddress import IPv4Address
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
)

from novacron_core.conflict.record import SCHEMA, WRITES_LABEL, Lifecycle, parse_copy

VM_ID = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"


def _integral(v: Any) -> Any:
    """JSON Schema counts ``2.0`` as an integer, so the API takes it; ``2.5`` stays invalid."""
    return int(v) if isinstance(v, float) and v.is_integer() else v


# A JSON integer (2 or 2.0). Never a boolean or a string: models using it are strict.
JsonInt = Annotated[int, BeforeValidator(_integral)]


# Strict: a JSON ``true`` or ``"2"`` is not a number of CPUs (no silent coercion).
class VMSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    cpus: JsonInt = Field(ge=1, le=512)
    memory_mib: JsonInt = Field(ge=64, le=4 * 1024 * 1024)
    image: str = Field(min_length=1, max_length=512)
    disk_gib: JsonInt = Field(default=10, ge=1, le=65536)


LABEL_KEY = r"^([a-z0-9.-]{1,253}/)?[A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?$"
TAG = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,62}$"
# as types, so the OpenAPI document says what is refused (keys not matching: 422)
Tag = Annotated[str, StringConstraints(pattern=TAG)]
LabelKey = Annotated[str, StringConstraints(pattern=LABEL_KEY)]
LabelValue = Annotated[str, StringConstraints(max_length=63)]
JsonDict = dict[str, Any]  # (pydantic's alias is not exported)
_CLOSED: JsonDict = {"additionalProperties": False}  # label keys must match LabelKey's pattern


def _labels(value: dict[str, str | None]) -> dict[str, str | None]:
    import re

    for k, v in value.items():
        if not re.match(LABEL_KEY, k):
            raise ValueError(f"{k!r}: a label key is [prefix/]name (Kubernetes label syntax)")
        if v is not None and len(v) > 63:
            raise ValueError(f"{k}: a label value is at most 63 characters")
        if k == WRITES_LABEL and v not in (None, "home", "multi"):
            raise ValueError(f"{k}: home or multi, not {v!r}")
    return value


class VMCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    id: str = Field(pattern=VM_ID)
    name: str = Field(min_length=1, max_length=253)
    spec: VMSpec
    power: Literal["on", "off"] = "off"
    labels: dict[LabelKey, LabelValue] = Field(
        default_factory=dict, max_length=64, json_schema_extra=_CLOSED
    )
    tags: list[Tag] = Field(default_factory=list, max_length=64)
    description: str = Field(default="", max_length=4096)

    @field_validator("labels")
    @classmethod
    def _check_labels(cls, value: dict[str, str]) -> dict[str, str]:
        _labels(dict(value))
        return value

    @field_validator("tags")
    @classmethod
    def _check_tags(cls, value: list[str]) -> list[str]:
        import re

        for t in value:
            if not re.match(TAG, t):
                raise ValueError(f"{t!r}: a tag is 1-63 of A-Z a-z 0-9 _ . : -")
        return value


class VMPatch(BaseModel):
    """``PATCH /v1/vms/{id}``: labels merge (null removes one), tags are added/removed."""

    model_config = ConfigDict(extra="forbid", strict=True)

    name: str | None = Field(default=None, min_length=1, max_length=253)
    labels: dict[LabelKey, LabelValue | None] = Field(
        default_factory=dict, max_length=64, json_schema_extra=_CLOSED
    )
    add_tags: list[Tag] = Field(default_factory=list, max_length=64)
    remove_tags: list[Tag] = Field(default_factory=list, max_length=64)
    description: str | None = Field(default=None, max_length=4096)

    @field_validator("labels")
    @classmethod
    def _check_labels(cls, value: dict[str, str | None]) -> dict[str, str | None]:
        return _labels(value)


class LifecycleChange(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    state: Lifecycle


class PlacementChange(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    host: str = Field(min_length=1, max_length=253)
    zone: str | None = Field(default=None, max_length=63)


class ReaddressChange(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    nic: str = Field(default="eth0", min_length=1, max_length=15)
    ip: IPv4Address | None = None  # None: the lowest free address of the NIC's pool


def _exactly_one(schema: JsonDict) -> None:
    """The schema of a body that gives exactly one of its (non-null) properties."""
    schema["minProperties"] = schema["maxProperties"] = 1
    props = schema.get("properties")
    for prop in props.values() if isinstance(props, dict) else []:
        if not isinstance(prop, dict):
            continue
        options = prop.pop("anyOf", None)
        if isinstance(options, list):
            prop.update(next(o for o in options if isinstance(o, dict) and o.get("type") != "null"))
        prop.pop("default", None)


class ConflictResolve(BaseModel):
    """``POST /v1/conflicts/{id}/resolve``: exactly one of ``pick`` (the dot of the write
    whose values win, e.g. ``us-west1:4``), ``values`` (per contested path) or ``accept``
    (a write parked under a stale fencing epoch: apply it, or discard it)."""

    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra=_exactly_one)

    pick: str | None = Field(default=None, min_length=3, max_length=300)
    values: dict[str, object] | None = Field(default=None, min_length=1, max_length=64)
    accept: bool | None = None

    def given(self) -> list[str]:
        """The fields the body gave (exactly one, not null, is what the API takes)."""
        return [f for f in sorted(self.model_fields_set) if getattr(self, f) is not None]


class PowerChange(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    state: Literal["on", "off"]


class VMRecord(BaseModel):
    id: str
    name: str
    home_region: str
    spec: VMSpec
    power: Literal["on", "off"] = "off"
    version: int = 1

    def key(self) -> str:
        return vm_key(self.id)


def vm_key(vm_id: str) -> str:
    return f"vm/{vm_id}"


class CorruptRecordError(ValueError):
    """A value under ``vm/`` that is not a VM record (the key space belongs to the VM API,
    but a reader must survive whatever bytes it finds there)."""


def parse_record(vm_id: str, raw: bytes) -> VMRecord:
    """The record stored for ``vm_id``; :class:`CorruptRecordError` saying why it is not one."""
    try:
        rec = VMRecord.model_validate_json(raw)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(x) for x in first["loc"]) or "record"
        raise CorruptRecordError(f"{where}: {first['msg']}") from None
    if rec.id != vm_id:
        raise CorruptRecordError(f"holds the record of {rec.id!r}")
    return rec


class VMView(BaseModel):
    """A VM record as the API shows it (schema 2, :mod:`novacron_core.conflict.record`):
    what a stored value must hold to be read as one, and the responses' documented shape."""

    model_config = ConfigDict(extra="allow")

    schema_: Literal[2] = Field(alias="schema")
    kind: str = "vm"
    id: str
    name: str
    home_region: str
    spec: dict[str, Any]
    lifecycle: Literal[
        "pending", "provisioning", "running", "stopping", "stopped", "migrating", "deleted"
    ]
    power: Literal["on", "off"]
    placement: dict[str, Any] = Field(default_factory=dict)
    nics: list[dict[str, Any]] = Field(default_factory=list)
    labels: dict[str, str] = Field(default_factory=dict)
    tags: list[str] = Field(default_factory=list)
    description: str = ""
    vv: dict[str, int]
    version: int


def check_record(vm_id: str, raw: bytes) -> dict[str, Any]:
    """The record stored for ``vm_id`` as JSON: schema 2 as it is, schema 1 (what older
    nodes wrote) validated as :class:`VMRecord`; :class:`CorruptRecordError` saying why
    it is neither."""
    try:
        doc = json.loads(raw)
    except ValueError:
        raise CorruptRecordError("record: not JSON") from None
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
        return parse_record(vm_id, raw).model_dump(mode="json")
    try:
        VMView.model_validate(doc)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(x) for x in first["loc"]) or "record"
        raise CorruptRecordError(f"{where}: {first['msg']}") from None
    if doc["id"] != vm_id:
        raise CorruptRecordError(f"holds the record of {doc['id']!r}")
    if parse_copy(doc, str(doc.get("home_region", ""))) is None:
        raise CorruptRecordError("vv: no write of the region that wrote it")
    return doc
