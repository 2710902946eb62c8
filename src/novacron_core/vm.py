"""The VM record every region's Raft group stores (key ``vm/{id}``, JSON value).

Updates are read-modify-compare-and-swap on the whole record, with ``version`` bumped on
each change, so concurrent updates through different nodes never lose each other's effect.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

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


class VMCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    id: str = Field(pattern=VM_ID)
    name: str = Field(min_length=1, max_length=253)
    spec: VMSpec
    power: Literal["on", "off"] = "off"


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
