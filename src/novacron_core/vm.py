"""What clients send to create and change VM records (the API's request bodies).

The record a region's group stores under ``vm/{id}`` is schema 2
(:mod:`novacron_core.conflict.record`: lifecycle, placement, NICs, a version vector);
:class:`VMRecord` is the schema-1 record older nodes wrote, still read (and upgraded).
Every write is prepared on top of what the region knows and committed with a
compare-and-swap on the exact bytes of the region's copy (``conflict/writes.py``), so
concurrent updates through different nodes never lose each other's effect.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from novacron_core.conflict.record import LIFECYCLE, WRITES_LABEL

VM_ID = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"


class VMSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cpus: int = Field(ge=1, le=512)
    memory_mib: int = Field(ge=64, le=4 * 1024 * 1024)
    image: str = Field(min_length=1, max_length=512)
    disk_gib: int = Field(default=10, ge=1, le=65536)


LABEL_KEY = r"^([a-z0-9.-]{1,253}/)?[A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?$"
TAG = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,62}$"


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
    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=VM_ID)
    name: str = Field(min_length=1, max_length=253)
    spec: VMSpec
    power: Literal["on", "off"] = "off"
    labels: dict[str, str] = Field(default_factory=dict, max_length=64)
    tags: list[str] = Field(default_factory=list, max_length=64)
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

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=253)
    labels: dict[str, str | None] = Field(default_factory=dict, max_length=64)
    add_tags: list[str] = Field(default_factory=list, max_length=64)
    remove_tags: list[str] = Field(default_factory=list, max_length=64)
    description: str | None = Field(default=None, max_length=4096)

    @field_validator("labels")
    @classmethod
    def _check_labels(cls, value: dict[str, str | None]) -> dict[str, str | None]:
        return _labels(value)


class LifecycleChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    state: str

    @field_validator("state")
    @classmethod
    def _known(cls, value: str) -> str:
        if value not in LIFECYCLE:
            raise ValueError(f"one of {', '.join(LIFECYCLE)}")
        return value


class PlacementChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    host: str = Field(min_length=1, max_length=253)
    zone: str | None = Field(default=None, max_length=63)


class ReaddressChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    nic: str = Field(default="eth0", min_length=1, max_length=15)
    ip: str | None = None  # None: the lowest free address of the NIC's pool


class ConflictResolve(BaseModel):
    """``POST /v1/conflicts/{id}/resolve``: exactly one of ``pick`` (the dot of the write
    whose values win, e.g. ``us-west1:4``), ``values`` (per contested path) or ``accept``
    (a write parked under a stale fencing epoch: apply it, or discard it)."""

    model_config = ConfigDict(extra="forbid")

    pick: str | None = Field(default=None, min_length=3, max_length=300)
    values: dict[str, object] = Field(default_factory=dict, max_length=64)
    accept: bool | None = None


class PowerChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

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
