"""Agents live in another namespace than their region (no owner reference reaches there)
and no finalizer holds a region: whichever pass comes next removes the agent objects of a
region that is gone, and only those of regions this operator watches."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from novacron_operator.builders.common import OWNER_LABEL, OWNER_NAMESPACE_LABEL
from novacron_operator.regions import sweep_orphaned_agents

Obj = dict[str, Any]


@dataclass
class FakeInformer:
    namespace: str
    items: dict[str, Obj]
    synced: asyncio.Event = field(default_factory=asyncio.Event)
    forbidden: bool = False


@dataclass
class FakeKube:
    """The informer caches the sweep reads, and the deletes it makes."""

    informers: dict[tuple[str, str], FakeInformer]
    agents: dict[str, list[Obj]]
    deleted: list[tuple[str, str, str]] = field(default_factory=list)

    async def cached_list(self, kind: str, namespace: str) -> list[Obj]:
        return [o for o in self.agents.get(kind, []) if o["metadata"]["namespace"] == namespace]

    async def delete(self, kind: str, namespace: str, name: str) -> None:
        self.deleted.append((kind, namespace, name))


def region(name: str, uid: str) -> Obj:
    return {"metadata": {"name": name, "uid": uid}}


def agent_obj(name: str, uid: str, home: str | None) -> Obj:
    labels = {OWNER_LABEL: uid, **({OWNER_NAMESPACE_LABEL: home} if home else {})}
    return {"metadata": {"name": name, "namespace": "agents", "labels": labels}}


def kube(synced: bool = True) -> FakeKube:
    informers = {
        ("NovaCronRegion", "prod"): FakeInformer("prod", {"east": region("east", "u-east")}),
        ("NovaCronRegion", "dev"): FakeInformer("dev", {}),
    }
    for inf in informers.values():
        if synced:
            inf.synced.set()
    agents = {
        "DaemonSet": [
            agent_obj("prod-east-agent", "u-east", "prod"),  # live region
            agent_obj("prod-west-agent", "u-west", "prod"),  # deleted while no operator ran
            agent_obj("dev-x-agent", "u-x", "dev"),  # gone too
            agent_obj("other-y-agent", "u-y", "other"),  # another operator's region
            agent_obj("old-z-agent", "u-z", None),  # no home label: not ours to judge
        ],
        "Secret": [agent_obj("prod-west-agent-wireguard", "u-west", "prod")],
    }
    return FakeKube(informers, agents)


def test_agents_of_gone_regions_of_watched_namespaces_are_removed() -> None:
    k = kube()
    assert asyncio.run(sweep_orphaned_agents(k, "agents")) == 3  # type: ignore[arg-type]
    assert sorted(k.deleted) == [
        ("DaemonSet", "agents", "dev-x-agent"),
        ("DaemonSet", "agents", "prod-west-agent"),
        ("Secret", "agents", "prod-west-agent-wireguard"),
    ]


def test_nothing_is_removed_before_every_namespace_s_regions_are_listed() -> None:
    k = kube(synced=False)
    assert asyncio.run(sweep_orphaned_agents(k, "agents")) == 0  # type: ignore[arg-type]
    k = kube()
    k.informers[("NovaCronRegion", "dev")].forbidden = True  # its regions are unknown
    assert asyncio.run(sweep_orphaned_agents(k, "agents")) == 0  # type: ignore[arg-type]
    assert not k.deleted
