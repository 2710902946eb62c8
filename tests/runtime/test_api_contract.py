"""The node API's contract with a real one-member node: bad input is a 4xx problem naming
what is wrong (never a 500, never coerced), the VM key space belongs to the VM API and its
readers survive any stored bytes (also the federation's), ETag / If-Match on VM records."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp

from novacron_core.federation import vmflow
from novacron_core.machine import Ready
from tests.runtime.inproc import make_node, running_node, serving, store_raw

VM = {"id": "web-1", "name": "web", "spec": {"cpus": 2, "memory_mib": 2048, "image": "u"}}
PROBLEM = "application/problem+json"


async def _req(
    http: aiohttp.ClientSession, method: str, url: str, **kw: Any
) -> tuple[int, Any, aiohttp.typedefs.LooseHeaders]:
    async with http.request(method, url, **kw) as r:
        raw = await r.read()
        body: Any = raw
        if r.content_type in (PROBLEM, "application/json"):
            body = json.loads(raw)
        if r.status >= 400:  # every error: RFC 9457, saying it was not applied
            assert r.content_type == PROBLEM, (r.status, raw[:300])
            assert body["status"] == r.status
            assert body["type"].startswith("urn:novacron:problem:")
            assert body["title"]
            assert body["detail"]
        return r.status, body, r.headers


def _spec(**over: Any) -> dict[str, Any]:
    return {**VM, "spec": {**VM["spec"], **over}}


BAD_INPUT = [
    # (method, path, kwargs, status, words the detail must contain)
    ("PUT", "/v1/kv/a", {"headers": {"X-Client-Id": "c", "X-Request-Seq": str(2**64)}}, 400,
     ["X-Request-Seq"]),
    ("PUT", "/v1/kv/a", {"headers": {"X-Client-Id": "c", "X-Request-Seq": "9" * 30}}, 400,
     ["X-Request-Seq"]),
    ("PUT", "/v1/kv/a", {"headers": {"X-Client-Id": "c", "X-Request-Seq": "-1"}}, 400,
     ["X-Request-Seq"]),
    ("POST", "/v1/cas/a", {"json": {"expected": None, "value": "x"},
     "headers": {"X-Client-Id": "c", "X-Request-Seq": str(2**70)}}, 400, ["X-Request-Seq"]),
    ("POST", "/v1/vms", {"json": [VM]}, 400, ["JSON object", "array"]),
    ("POST", "/v1/vms", {"json": "web-1"}, 400, ["JSON object", "string"]),
    ("POST", "/v1/vms", {"data": b"{not json"}, 400, ["not valid JSON"]),
    ("POST", "/v1/vms", {"data": b""}, 400, ["empty"]),
    ("POST", "/v1/vms", {"json": _spec(cpus=True)}, 422, ["spec.cpus"]),
    ("POST", "/v1/vms", {"json": _spec(cpus="2")}, 422, ["spec.cpus"]),
    ("POST", "/v1/vms", {"json": _spec(memory_mib=2048.5)}, 422, ["spec.memory_mib"]),
    ("POST", "/v1/vms", {"json": {**VM, "id": "Not_An_Id"}}, 422, ["id"]),
    ("POST", "/v1/vms", {"json": {**VM, "extra": 1}}, 422, ["extra"]),
    ("PUT", "/v1/vms/web-1/spec", {"json": {"cpus": 1, "memory_mib": True, "image": "u"}}, 422,
     ["memory_mib"]),
    ("POST", "/v1/vms/web-1/power", {"json": {"state": 1}}, 422, ["state"]),
    ("POST", "/v1/vms/web-1/power", {"json": [{"state": "on"}]}, 400, ["array"]),
    ("POST", "/v1/vms/web-1/power", {"json": {"state": "on"}, "headers": {"If-Match": "v3"}},
     400, ["If-Match"]),
    ("POST", "/v1/cas/k", {"json": {"expected": None}}, 422, ["value"]),
    ("POST", "/v1/cas/k", {"json": {"expected": 1, "value": "x"}}, 422, ["expected"]),
    ("POST", "/v1/cas/k", {"json": ["x"]}, 400, ["array"]),
    ("POST", "/v1/cluster/members", {"json": {"action": "fly", "node": "n9"}}, 422, ["action"]),
    ("POST", "/v1/cluster/members", {"json": {"action": "add_learner", "node": "n9",
     "peer": "nohost", "http": "h:1"}}, 422, ["peer"]),
    ("POST", "/v1/cluster/members", {"json": {"action": "add_learner", "node": "n9",
     "peer": "h:70000", "http": "h:1"}}, 422, ["peer", "port"]),
    ("POST", "/v1/cluster/members", {"json": 7}, 400, ["number"]),
    ("POST", "/v1/cluster/transfer", {"json": {"target": True}}, 422, ["target"]),
    ("POST", "/v1/cluster/transfer", {"data": b"null"}, 400, ["null"]),
    ("PUT", "/v1/kv/" + "k" * 1025, {"data": b"x"}, 422, ["key"]),
    ("GET", "/v1/nothing-here", {}, 404, ["/v1/nothing-here"]),
    ("PATCH", "/v1/vms", {}, 405, ["PATCH", "GET"]),
    ("PUT", "/v1/kv/big", {"data": b"x" * (5 << 20)}, 413, ["too large"]),
]  # fmt: skip


async def test_bad_input_is_a_4xx_problem_that_names_what_is_wrong(tmp_path: Path) -> None:
    async with running_node(tmp_path, fsync=False) as url, aiohttp.ClientSession() as http:
        for method, path, kw, status, words in BAD_INPUT:
            got, body, headers = await _req(http, method, url + path, **kw)
            assert got == status, (method, path, kw, body)
            assert body["outcome"] == "not_applied", body
            for w in words:
                assert w in body["detail"], (method, path, w, body["detail"])
            if got == 405:
                assert "POST" in headers["Allow"]
        # nothing of that was applied: no VM was created from a coerced body
        status, body, _ = await _req(http, "GET", url + "/v1/vms")
        assert (status, body["vms"]) == (200, [])


async def test_the_vm_key_space_belongs_to_the_vm_api(tmp_path: Path) -> None:
    async with running_node(tmp_path, fsync=False) as url, aiohttp.ClientSession() as http:
        assert (await _req(http, "POST", url + "/v1/vms", json=VM))[0] == 201
        for method, path, kw in [
            ("PUT", "/v1/kv/vm/garbage", {"data": b"not a record"}),
            ("PUT", "/v1/kv/vm/web-1", {"data": b"{}"}),
            ("DELETE", "/v1/kv/vm/web-1", {}),
            ("POST", "/v1/cas/vm/web-1", {"json": {"expected": None, "value": "x"}}),
        ]:
            status, body, _ = await _req(http, method, url + path, **kw)
            assert status == 403, (method, path, body)
            assert body["type"].endswith(":reserved-key")
            assert "/v1/vms" in body["detail"]
        status, body, _ = await _req(http, "GET", url + "/v1/vms")
        assert status == 200
        assert [v["id"] for v in body["vms"]] == ["web-1"]
        # reading the key space raw stays allowed
        assert (await _req(http, "GET", url + "/v1/kv/vm/web-1"))[0] == 200


async def test_vm_readers_survive_any_stored_bytes(tmp_path: Path) -> None:
    node, url = make_node(tmp_path, fsync=False)
    async with serving(node), aiohttp.ClientSession() as http:
        assert (await _req(http, "POST", url + "/v1/vms", json=VM))[0] == 201
        for vm_id, raw in [
            ("garbage", b"\xff\xfe not even utf-8"),
            ("array", b"[1, 2]"),
            ("partial", b'{"id": "partial", "name": "p"}'),
            ("other", json.dumps({**VM, "id": "someone-else"}).encode()),
        ]:
            await store_raw(node, f"vm/{vm_id}", raw)
        status, body, _ = await _req(http, "GET", url + "/v1/vms")
        assert status == 200
        assert [v["id"] for v in body["vms"]] == ["web-1"]
        assert sorted(c["id"] for c in body["corrupt"]) == ["array", "garbage", "other", "partial"]
        for vm_id in ("garbage", "array", "partial", "other"):
            status, body, _ = await _req(http, "GET", f"{url}/v1/vms/{vm_id}")
            assert status == 409, body
            assert body["type"].endswith(":corrupt-record")
            assert f"DELETE /v1/vms/{vm_id}" in body["detail"]
        status, body, _ = await _req(
            http, "POST", url + "/v1/vms/garbage/power", json={"state": "on"}
        )
        assert (status, body["type"].rsplit(":", 1)[1]) == (409, "corrupt-record")
        # the VM API heals it
        assert (await _req(http, "DELETE", url + "/v1/vms/garbage"))[0] == 200
        assert (await _req(http, "GET", url + "/v1/vms/garbage"))[0] == 404
        assert (await _req(http, "GET", url + "/v1/vms/web-1"))[0] == 200


async def test_the_federation_readers_survive_a_corrupt_record(tmp_path: Path) -> None:
    """A value under vm/ that an older node published to the federation: the federation API
    and the node API (which answers foreign VMs from the replica) report it, never a 500,
    and this region's leader, which does not hold the key, deletes it federation-wide."""
    node, url = make_node(tmp_path, region="r1", federated=True, fsync=False)
    machine = node.machine

    def garbage(now: float) -> Ready:
        out = Ready()
        change = vmflow.Publish("vm/ghost", b"\x00 garbage from elsewhere")
        machine._local_update(now, vmflow.as_mutation(change, vmflow.stamp(1, "r0")), out)
        return machine._finish(now, out)

    def republish(now: float) -> Ready:
        machine.publisher.republish()  # the next committed batch compares every key
        return Ready()

    async with serving(node), aiohttp.ClientSession() as http:
        assert node.driver is not None
        assert machine.replica is not None
        store = machine.replica.store
        node.driver.inject(garbage)
        for _ in range(100):
            if store.value("vm/ghost") is not None:
                break
            await asyncio.sleep(0.02)
        status, body, _ = await _req(http, "GET", url + "/v1/federation/vms/ghost")
        assert (status, body.get("type")) == (409, "urn:novacron:problem:corrupt-record"), body
        status, body, _ = await _req(http, "GET", url + "/v1/vms/ghost")
        assert status == 409, body  # not homed here: answered from the replica, reported
        status, body, _ = await _req(http, "GET", url + "/v1/federation/vms")
        assert (status, body["vms"]) == (200, [])
        # the leader's next full comparison removes it
        node.driver.inject(republish)
        assert (await _req(http, "PUT", url + "/v1/kv/poke", data=b"x"))[0] == 200
        for _ in range(100):
            if store.value("vm/ghost") is None:
                break
            await asyncio.sleep(0.02)
        assert store.value("vm/ghost") is None
        status, body, _ = await _req(http, "GET", url + "/v1/federation/vms/ghost")
        assert status == 404
        # the demo's link rules are off: netem is not there, whatever the body
        status, body, _ = await _req(
            http, "POST", url + "/v1/federation/netem", json={"partitioned": []}
        )
        assert status == 404, body
        assert "demo" in body["detail"], body


async def test_netem_refuses_bad_bodies_naming_the_field(tmp_path: Path) -> None:
    node, url = make_node(tmp_path, federated=True, fsync=False, demo_link_rules=True)
    async with serving(node), aiohttp.ClientSession() as http:
        net = url + "/v1/federation/netem"
        for bad in ([], {"partitioned": "r1"}, {"partitioned": [1]}, {"x": []}):
            status, body, _ = await _req(http, "POST", net, json=bad)
            assert status in (400, 422), (bad, body)
        status, body, _ = await _req(http, "POST", net, data=b"{broken")
        assert status == 400
        status, body, _ = await _req(http, "POST", net, json={"partitioned": ["r2"]})
        assert (status, body) == (200, {"partitioned": ["r2"]})


async def test_vm_reads_carry_an_etag_and_writes_honour_if_match(tmp_path: Path) -> None:
    async with running_node(tmp_path, fsync=False) as url, aiohttp.ClientSession() as http:
        status, _, headers = await _req(http, "POST", url + "/v1/vms", json=VM)
        assert (status, headers["ETag"]) == (201, '"1"')
        status, body, headers = await _req(http, "GET", url + "/v1/vms/web-1")
        assert (status, headers["ETag"], body["version"]) == (200, '"1"', 1)
        on = {"state": "on"}
        status, body, headers = await _req(
            http, "POST", url + "/v1/vms/web-1/power", json=on, headers={"If-Match": '"1"'}
        )
        assert (status, body["power"], headers["ETag"]) == (200, "on", '"2"')
        # a client that read version 1 and writes now loses: 412, nothing written
        spec = {"cpus": 8, "memory_mib": 4096, "image": "u"}
        status, body, headers = await _req(
            http, "PUT", url + "/v1/vms/web-1/spec", json=spec, headers={"If-Match": '"1"'}
        )
        assert (status, headers["ETag"], body["current_version"]) == (412, '"2"', 2)
        assert body["outcome"] == "not_applied"
        status, body, _ = await _req(http, "GET", url + "/v1/vms/web-1")
        assert (body["spec"]["cpus"], body["version"]) == (2, 2)
        # (powering on a running VM changes nothing: alternate, so each write is a change)
        steps = [('W/"2"', "off", 412), ('"7", "2"', "off", 200), ("*", "on", 200)]
        steps += [("4", "off", 200), ("4", "on", 412)]
        for tags, state, want in steps:
            status, _, _ = await _req(
                http,
                "POST",
                url + "/v1/vms/web-1/power",
                json={"state": state},
                headers={"If-Match": tags},
            )
            assert status == want, tags
        status, _, _ = await _req(
            http, "POST", url + "/v1/vms/nope/power", json=on, headers={"If-Match": "*"}
        )
        assert status == 404
        status, _, _ = await _req(
            http, "DELETE", url + "/v1/vms/web-1", headers={"If-Match": '"1"'}
        )
        assert status == 412
        status, _, _ = await _req(
            http, "DELETE", url + "/v1/vms/web-1", headers={"If-Match": '"5"'}
        )
        assert status == 200
        assert (await _req(http, "GET", url + "/v1/vms/web-1"))[0] == 404
