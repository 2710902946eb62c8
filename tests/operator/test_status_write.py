"""write_status: the document it patches comes from the kind's pydantic status model (the
CRD's schema source), in the API's camelCase, with only the fields the pass set."""

from __future__ import annotations

from typing import Any

from novacron_operator.models import (
    DWCPFederationStatus,
    MemberStatus,
    NovaCronRegionStatus,
)
from novacron_operator.reconcile import write_status
from novacron_operator.status import no, progressing_health, ready_health

Obj = dict[str, Any]


class FakeKube:
    def __init__(self) -> None:
        self.patches: list[Obj] = []
        self.events: list[tuple[str, str]] = []

    async def patch_status(self, kind: str, namespace: str, name: str, status: Obj) -> Obj:
        self.patches.append(status)
        return {}

    def event_soon(self, owner: Obj, type_: str, reason: str, message: str) -> None:
        self.events.append((type_, reason))


def body(kind: str, status: Obj | None = None, generation: int = 3) -> Obj:
    meta = {"name": "r", "namespace": "ns", "uid": "u", "generation": generation}
    return {"kind": kind, "metadata": meta, "status": status or {}}


async def test_region_status_is_the_models_fields_in_camel_case() -> None:
    kube = FakeKube()
    status = NovaCronRegionStatus(
        selector="a=b", protocol="raft", replicas=3, ready_replicas=2, leader="r-0", term=4,
        commit_index=17, members=["r-0", "r-1", "r-2"],
    )  # fmt: skip
    health = progressing_health("RollingOut", "2/3 nodes ready")
    assert await write_status(kube, body("NovaCronRegion"), health, status)  # type: ignore[arg-type]
    (doc,) = kube.patches
    assert {k: v for k, v in doc.items() if k != "conditions"} == {
        "selector": "a=b",
        "protocol": "raft",
        "replicas": 3,
        "readyReplicas": 2,
        "leader": "r-0",
        "term": 4,
        "commitIndex": 17,
        "members": ["r-0", "r-1", "r-2"],
        "observedGeneration": 3,
    }
    ready = next(c for c in doc["conditions"] if c["type"] == "Ready")
    assert set(ready) == {
        "type", "status", "reason", "message", "lastTransitionTime", "observedGeneration"
    }  # fmt: skip
    assert (ready["status"], ready["reason"]) == ("False", "RollingOut")


async def test_a_field_set_to_none_is_cleared_and_an_unchanged_status_is_not_written() -> None:
    kube = FakeKube()
    first = NovaCronRegionStatus(leader="r-0", term=4)
    health = ready_health("Serving", "leader r-0")
    await write_status(kube, body("NovaCronRegion"), health, first)  # type: ignore[arg-type]
    stored = kube.patches[-1]
    # the same status again: nothing to write
    again = await write_status(kube, body("NovaCronRegion", stored), health, first)  # type: ignore[arg-type]
    assert again is False
    assert len(kube.patches) == 1
    # the group lost its leader: null in the merge patch removes the field
    gone = NovaCronRegionStatus(leader=None, term=None)
    await write_status(kube, body("NovaCronRegion", stored), health, gone)  # type: ignore[arg-type]
    assert kube.patches[-1]["leader"] is None
    assert kube.patches[-1]["term"] is None
    # fields the pass did not set are left out, not written as null
    assert "replicas" not in kube.patches[-1]


async def test_federation_members_carry_only_what_is_known() -> None:
    kube = FakeKube()
    members = [
        MemberStatus(name="eu", local=False, ready=True, region="eu"),
        MemberStatus(name="us", local=True, ready=False, message="NovaCronRegion us is not Ready"),
    ]
    health = progressing_health("MembersProgressing", "waiting for us").with_extra(
        no("MemberNamesMatch", "NameMismatch", "x")
    )
    status = DWCPFederationStatus(members=members, ready_members=1)
    await write_status(kube, body("DWCPFederation"), health, status)  # type: ignore[arg-type]
    doc = kube.patches[-1]
    assert doc["members"] == [
        {"name": "eu", "local": False, "ready": True, "region": "eu"},
        {"name": "us", "local": True, "ready": False, "message": "NovaCronRegion us is not Ready"},
    ]
    assert doc["readyMembers"] == 1
    assert ("Warning", "NameMismatch") in kube.events
