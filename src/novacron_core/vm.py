"""The VM record every region's Raft group stores (key ``vm/{id}``, JSON value).

Updates are read-modify-compare-and-swap on the whole record, with ``version`` bumped on
each change, so concurrent updates through different nodes never lose each other's effect.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

VM_ID = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"


class VMSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cpus: int = Field(ge=1, le=512)
    memory_mib: int = Field(ge=64, le=4 * 1024 * 1024)
    image: str = Field(min_length=1, max_length=512)
    disk_gib: int = Field(default=10, ge=1, le=65536)


class VMCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=VM_ID)
    name: str = Field(min_length=1, max_length=253)
    spec: VMSpec
    power: Literal["on", "off"] = "off"


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
