"""Multi-region writes with real ``novacron node`` processes: two regions of one node each,
partitioned by their link rules, writing the same VM; the conflicts API and CLI; a changed
``conflictPolicies`` applied by the running nodes; the audit trail across a restart."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from click.testing import CliRunner

from novacron_core.cli import main
from tests.runtime.procs import call
from tests.runtime.test_federated_node import REGIONS, Fed, _status, _until

SPEC = {"cpus": 1, "memory_mib": 512, "image": "debian-12"}


class ConflictFed(Fed):
    def doc(self, interval_ms: int = 100, fanout: int = 2, sync: int = 0, **pol: Any) -> Any:
        d = super().doc(interval_ms, fanout, sync)
        for m in d["members"]:
            m["http"] = [self.url(m["region"])]
        d["conflictPolicies"] = {"writes": "home", "default": "merge", **pol}
        return d


@pytest.fixture
async def cfed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[ConflictFed]:
    import subprocess

    real = subprocess.Popen

    def popen(cmd: list[str], *a: Any, **kw: Any) -> Any:
        # the demo's link rules, so that the test can partition the two regions
        if "--federation-file" in cmd:
            cmd = [*cmd, "--demo-link-rules"]
        return real(cmd, *a, **kw)

    monkeypatch.setattr(subprocess, "Popen", popen)
    f = ConflictFed(tmp_path)
    try:
        yield f
    finally:
        f.stop()


async def _json(http: aiohttp.ClientSession, method: str, url: str, **kw: Any) -> Any:
    status, body = await call(http, method, url, **kw)
    assert status < 300, (status, body)
    return json.loads(body)


async def _partition(http: aiohttp.ClientSession, fed: Fed, cut: list[str]) -> None:
    for r in REGIONS:
        await _json(http, "POST", fed.url(r) + "/v1/federation/netem", json={"partitioned": cut})


def _cli(*args: str) -> str:
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == 0, result.output
    return result.output


async def test_a_vm_written_on_both_sides_of_a_partition_converges_with_its_audit(
    cfed: ConflictFed,
) -> None:
    fed = cfed
    fed.write(fed.doc())
    for r in REGIONS:
        fed.start(r)
    east, west = fed.url("east"), fed.url("west")
    async with aiohttp.ClientSession() as http:
        for r in REGIONS:

            async def member(r: str = r) -> bool:
                return bool((await _status(http, fed.url(r))).get("member"))

            await _until(f"{r} federated", member)
        vm = {"id": "web", "name": "web", "spec": SPEC, "power": "on"}
        await _json(http, "POST", east + "/v1/vms", json=vm)
        db = {"id": "db", "name": "db", "spec": SPEC, "labels": {"tier": "data"}}
        await _json(http, "POST", east + "/v1/vms", json=db)

        async def seen(vm: str = "web") -> Any:
            async with http.get(west + f"/v1/federation/vms/{vm}") as r:
                return await r.json() if r.status == 200 else None

        await _until("web and db in west", lambda: seen("db"))
        # writes: home - west is sent to the VM's home region, with its address
        status, body = await call(http, "POST", west + "/v1/vms/db/power", json={"state": "on"})
        assert status == 421, body
        refused = json.loads(body)
        assert (refused["home_region"], refused["home"], refused["outcome"]) == (
            "east",
            [east],
            "not_applied",
        )
        assert refused["type"] == "urn:novacron:problem:wrong-region", refused
        out = _cli("vms", "power", "db", "on", "--url", west, "--json")  # the CLI follows it
        assert json.loads(out)["lifecycle"] == "running"

        # writes: multi from here on (the running nodes take the changed file)
        fed.write(fed.doc(writes="multi"))

        async def multi() -> bool:
            st = [await _status(http, fed.url(r)) for r in REGIONS]
            return all(s["conflict_policies"]["writes"] == "multi" for s in st)

        await _until("writes: multi on both nodes", multi)
        await _partition(http, fed, ["west"])
        # both sides power-cycle web and give it a new address
        for url in (east, west):
            await _json(http, "POST", url + "/v1/vms/web/power", json={"state": "off"})
            await _json(http, "POST", url + "/v1/vms/web/power", json={"state": "on"})
        e_addr = (await _json(http, "POST", east + "/v1/vms/web/readdress"))["nics"][0]
        w_addr = (await _json(http, "POST", west + "/v1/vms/web/readdress"))["nics"][0]
        await _json(http, "PATCH", west + "/v1/vms/web", json={"labels": {"owner": "west"}})
        assert e_addr["address"]["lease"] < w_addr["address"]["lease"]
        await _partition(http, fed, [])

        async def agreed() -> Any:
            views = [
                await _json(http, "GET", fed.url(r) + "/v1/federation/vms/web") for r in REGIONS
            ]
            return views[0] if views[0] == views[1] and views[0].get("conflict") else None

        view = await _until("both regions to show one merged record", agreed)
        assert view["nics"][0]["address"] == e_addr["address"]  # the earlier lease
        assert view["labels"]["owner"] == "west"  # one side's change, merged
        assert view["lifecycle"] == "running"

        async def listed(url: str) -> Any:
            return (await _json(http, "GET", url + "/v1/conflicts?vm=web"))["conflicts"]

        (entry,) = await listed(east)
        assert await listed(west) == [entry]
        assert set(entry["kinds"]) >= {"concurrent", "address"}  # both ended running: no contest
        address = next(f for f in entry["fields"] if f["path"] == "nics.eth0.address")
        assert address["overwritten"][0]["value"] == w_addr["address"]
        out = _cli("conflicts", "list", "--url", east)
        assert entry["id"] in out
        assert "nics.eth0.address" in out
        assert "earlier lease" in _cli("conflicts", "show", entry["id"], "--url", west)

        # a changed policy decides the open conflict again, without a restart
        rule = [{"field": "nics.*.address", "strategy": "lww"}]
        fed.write(fed.doc(writes="multi", rules=rule))

        async def redecided() -> Any:
            views = [
                await _json(http, "GET", fed.url(r) + "/v1/federation/vms/web") for r in REGIONS
            ]
            lease = views[0]["nics"][0]["address"]["lease"]
            return views[0] == views[1] and lease == w_addr["address"]["lease"]

        await _until("the later lease to win under lww", redecided)
        (entry,) = await listed(west)
        assert (
            next(f for f in entry["fields"] if f["path"] == "nics.eth0.address")["strategy"]
            == "lww"
        )

        # roll the decision back (west), then decide by hand (east)
        await _json(http, "POST", west + f"/v1/conflicts/{entry['id']}/rollback")

        async def parked() -> bool:
            e = await _json(http, "GET", east + f"/v1/conflicts/{entry['id']}")
            return bool(e["status"] == "manual" and e["resolution"] == "rolled-back")

        await _until("the rollback to reach east", parked)
        east_dot = next(h["dot"] for h in entry["heads"] if h["region"] == "east")
        _cli("conflicts", "resolve", entry["id"], "--pick", east_dot, "--url", east)

        async def resolved() -> bool:
            es = [
                await _json(http, "GET", fed.url(r) + f"/v1/conflicts/{entry['id']}")
                for r in REGIONS
            ]
            return all(e["status"] == "resolved" and e["resolution"] == "manual" for e in es)

        await _until("the manual decision in both regions", resolved)
        final = await _json(http, "GET", west + "/v1/vms/web")
        assert final["nics"][0]["address"] == e_addr["address"]

        # the audit trail is on disk: a restarted node lists the same, logging nothing twice
        before = await _json(http, "GET", east + "/v1/conflicts?all=1")
        fed.procs["east"].terminate()
        fed.procs["east"].wait(10)
        fed.start("east")
        await _until("east back", lambda: _status(http, east))

        async def same_again() -> bool:
            got = await _json(http, "GET", east + "/v1/conflicts?all=1")
            return bool(got["conflicts"] == before["conflicts"])

        await _until("east's audit after the restart", same_again)
        hist = await _json(http, "GET", east + f"/v1/conflicts/{entry['id']}")
        events = [e["event"] for e in hist["events"]]
        assert events.count("detected") == 1, events
        async with http.get(east + "/metrics") as r:
            text = await r.text()
        assert 'novacron_conflicts_detected{kind="address",region="east"}' in text, text[-2000:]
