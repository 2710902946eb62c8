"""Volume resize decisions against a recording stand-in for the API server (the e2e run on
the local control plane does it for real: e2e/test_operator_first_contact.py)."""

from __future__ import annotations

from typing import Any

import pytest
from novacron_operator.builders import Owner
from novacron_operator.kube import ApiError
from novacron_operator.volumes import claim_size, quantity, resize

OWNER = Owner("NovaCronRegion", "east", "ns", "u-1")


class FakeKube:
    def __init__(self, claims: list[str], refuse: bool = False) -> None:
        self.claims = {f"data-east-{i}": size for i, size in enumerate(claims)}
        self.refuse = refuse
        self.patched: list[tuple[str, str]] = []
        self.deleted: list[tuple[str, str, str]] = []

    async def list(self, kind: str, namespace: str, selector: str = "") -> list[dict[str, Any]]:
        assert (kind, namespace) == ("PersistentVolumeClaim", "ns")
        assert "app.kubernetes.io/instance=east" in selector
        return [
            {"metadata": {"name": n}, "spec": {"resources": {"requests": {"storage": s}}}}
            for n, s in self.claims.items()
        ]

    async def request(self, method: str, url: str, body: Any, content_type: str) -> Any:
        name = url.rsplit("/", 1)[1]
        if self.refuse:
            raise ApiError(403, '{"message": "only dynamically provisioned pvc can be resized"}')
        size = body["spec"]["resources"]["requests"]["storage"]
        self.patched.append((name, size))
        self.claims[name] = size
        return {}

    async def delete(self, kind: str, namespace: str, name: str, propagation: str = "") -> bool:
        self.deleted.append((kind, name, propagation))
        return True


def sts(size: str, deleting: bool = False) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "east"}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    tmpl = {"metadata": {"name": "data"}, "spec": {"resources": {"requests": {"storage": size}}}}
    return {"metadata": meta, "spec": {"volumeClaimTemplates": [tmpl]}}


def test_quantities_compare_across_units() -> None:
    assert quantity("1Gi") == 2**30
    assert quantity("1500Mi") > quantity("1Gi") > quantity("1G")
    assert claim_size(sts("3Gi")) == "3Gi"
    with pytest.raises(ValueError, match="not a quantity"):
        quantity("ten gigs")


async def test_same_size_or_no_statefulset_needs_nothing() -> None:
    kube = FakeKube(["1Gi"])
    for live in (None, sts("1024Mi")):
        r = await resize(kube, OWNER, live, "1Gi", steady=True)  # type: ignore[arg-type]
        assert (r.keep, r.condition.status, r.condition.reason) == (None, True, "AsSpecified")
    assert kube.patched == kube.deleted == []


async def test_a_shrink_is_refused_and_the_live_size_kept() -> None:
    kube = FakeKube(["2Gi"])
    r = await resize(kube, OWNER, sts("2Gi"), "1Gi", steady=True)  # type: ignore[arg-type]
    assert (r.keep, r.condition.status, r.condition.reason) == ("2Gi", False, "ShrinkUnsupported")
    assert "cannot shrink" in r.condition.message
    assert kube.patched == kube.deleted == []


async def test_a_refused_expansion_is_reported_with_the_api_servers_words() -> None:
    kube = FakeKube(["1Gi", "1Gi"], refuse=True)
    r = await resize(kube, OWNER, sts("1Gi"), "2Gi", steady=True)  # type: ignore[arg-type]
    assert (r.keep, r.condition.reason) == ("1Gi", "ExpansionRefused")
    assert "only dynamically provisioned pvc can be resized" in r.condition.message
    assert "allowVolumeExpansion" in r.condition.message
    assert kube.deleted == []  # the StatefulSet stays as it is


async def test_claims_grow_first_and_the_statefulset_is_recreated_only_when_steady() -> None:
    kube = FakeKube(["1Gi", "1Gi", "2Gi"])
    busy = await resize(kube, OWNER, sts("1Gi"), "2Gi", steady=False)  # type: ignore[arg-type]
    assert sorted(kube.patched) == [("data-east-0", "2Gi"), ("data-east-1", "2Gi")]
    assert (busy.keep, busy.condition.reason, busy.again) == ("1Gi", "WaitingForRollout", True)
    assert kube.deleted == []
    done = await resize(kube, OWNER, sts("1Gi"), "2Gi", steady=True)  # type: ignore[arg-type]
    assert kube.deleted == [("StatefulSet", "east", "Orphan")]  # pods and claims stay
    assert (done.keep, done.skip_statefulset, done.again) == ("1Gi", True, True)
    going = await resize(kube, OWNER, sts("1Gi", True), "2Gi", True)  # type: ignore[arg-type]
    assert (going.skip_statefulset, going.condition.reason) == (True, "Resizing")
    assert len(kube.deleted) == 1
