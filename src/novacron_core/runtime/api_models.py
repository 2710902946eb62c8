"""Bodies of the node's HTTP API as pydantic models: requests are validated strictly (no
``true`` -> 1, no ``"2"`` -> 2), and the OpenAPI document (``runtime/openapi.py``) is
generated from the same models, so what is documented is what is enforced."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from novacron_core.consensus.interface import GroupStatus
from novacron_core.vm import VMView

HOST_PORT = r"^[^\s:]*[^\s]:[0-9]{1,5}$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


# ------------------------------------------------------------------ requests


class CasRequest(_Strict):
    """Compare-and-swap: set ``value`` if the key holds ``expected`` now (null: absent)."""

    expected: str | None = Field(description="the value required now; null: the key is absent")
    value: str | None = Field(description="the new value; null deletes the key")


class MemberChange(_Strict):
    """A membership change, applied by the leader one at a time."""

    action: Literal["add_learner", "promote", "add_voter", "remove"]
    node: str = Field(min_length=1, max_length=253, description="the node id")
    peer: str | None = Field(
        default=None,
        max_length=300,
        pattern=HOST_PORT,
        description="add_*: where the node listens for peers (host:port); may be left out "
        "when the node is already known",
    )
    http: str | None = Field(
        default=None,
        max_length=300,
        pattern=HOST_PORT,
        description="add_*: where the node serves HTTP (host:port)",
    )

    @field_validator("peer", "http")
    @classmethod
    def _port_in_range(cls, v: str | None) -> str | None:
        if v is not None and not 0 < int(v.rpartition(":")[2]) < 65536:
            raise ValueError("the port must be 1-65535")
        return v


class TransferRequest(_Strict):
    target: str = Field(min_length=1, max_length=253, description="the node id to lead next")


class NetemRequest(_Strict):
    """Federation link switch (demo): the regions cut off from every other region."""

    partitioned: list[str] = Field(default_factory=list, max_length=64)


# ------------------------------------------------------------------ responses


class ProblemBody(BaseModel):
    """RFC 9457 problem details, plus ``outcome`` (see docs/api.md)."""

    model_config = ConfigDict(extra="allow")

    type: str
    title: str
    status: int
    detail: str
    outcome: Literal["not_applied", "unknown"]


class Ok(BaseModel):
    ok: bool


class KVDeleted(BaseModel):
    ok: bool
    existed: bool


class CasResult(BaseModel):
    swapped: bool
    current: str | None


class CorruptRecord(BaseModel):
    id: str
    error: str


class VMList(BaseModel):
    vms: list[VMView]
    corrupt: list[CorruptRecord] = Field(
        default_factory=list,
        description="records under vm/ that do not parse (reported, never served as VMs)",
    )


class VMDeleted(BaseModel):
    deleted: str


# ``GET /v1/cluster``: the protocol-neutral group status document (consensus/interface.py),
# the same model the operator's admin client parses; "recovered" is what the node read back
# from its data dir at start.
ClusterStatus = GroupStatus


class Readiness(BaseModel):
    model_config = ConfigDict(extra="allow")

    ready: bool
    leader: str | None


class TransferResult(BaseModel):
    ok: bool
    detail: str


class FederationVMs(BaseModel):
    region: str
    vms: list[VMView]


class NetemState(BaseModel):
    partitioned: list[str]
