"""The gateway as a proxy, in front of real HTTP servers: what it forwards and adds, what
it retries and what it refuses to, how it treats bad input and floods."""

from __future__ import annotations

import asyncio
import json
import re
from collections import Counter

import aiohttp
import pytest

from novacron_core.balancing import BackendSpec
from tests.gateway.backends import Backend, gateway_over, problem, raw

TRACEPARENT = re.compile(r"^00-[0-9a-f]{32}-[0-9a-f]{16}-01$")


def two() -> dict[str, list[Backend]]:
    return {"local": [Backend("local"), Backend("local")]}


async def test_forwards_request_and_body_and_adds_what_a_proxy_should() -> None:
    async with gateway_over(two()) as (_gw, url), aiohttp.ClientSession() as http:
        async with http.put(
            url + "/v1/kv/k?x=1",
            data=b"hello",
            headers={
                "X-Forwarded-For": "10.1.1.1",
                "Connection": "keep-alive, X-Secret",
                "X-Secret": "s",
            },
        ) as r:
            assert r.status == 200
            doc = await r.json()
            assert r.headers["X-Novacron-Backend"].startswith("local/")
        assert doc["method"] == "PUT"
        assert doc["query"] == "x=1"
        assert doc["body"] == "hello"
        h = doc["headers"]
        assert h["X-Forwarded-For"] == "10.1.1.1, 127.0.0.1"
        assert h["X-Forwarded-Proto"] == "http"
        assert TRACEPARENT.match(h["traceparent"])
        assert "X-Secret" not in h or h["X-Secret"] == "s"  # listed in Connection: hop-by-hop
        given = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        async with http.get(url + "/v1/kv/k", headers={"traceparent": given}) as r:
            assert (await r.json())["headers"]["traceparent"] == given
        async with http.get(url + "/v1/kv/k", headers={"traceparent": "00-zz-bad-01"}) as r:
            replaced = (await r.json())["headers"]["traceparent"]
            assert TRACEPARENT.match(replaced)


async def test_streams_large_bodies_both_ways() -> None:
    async with gateway_over(two()) as (_gw, url), aiohttp.ClientSession() as http:
        async with http.get(url + "/v1/stream?n=128") as r:
            assert r.status == 200
            data = await r.read()
        assert len(data) == 128 * 16384
        assert data[:16384] == b"A" * 16384
        assert data[-16384:] == bytes([65 + 127 % 26]) * 16384

        async def gen() -> object:
            for i in range(40):
                yield bytes([97 + i % 26]) * 50_000

        async with http.post(url + "/v1/upload", data=gen()) as r:  # chunked request body
            doc = await r.json()
        assert doc["length"] == 40 * 50_000


async def test_a_malformed_request_gets_400_and_costs_only_its_connection() -> None:
    backends = two()
    async with gateway_over(backends) as (gw, url), aiohttp.ClientSession() as http:
        port = gw.bound_ports()[0]
        slow = asyncio.create_task(http.get(url + "/v1/slow?s=0.5"))
        await asyncio.sleep(0.1)
        for bad in (
            b"GARBAGE\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"GET /v1/kv/x HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
        ):
            out = await raw(port, bad)
            assert out.startswith(b"HTTP/1.1 400"), out
            assert b"Connection: close" in out
            assert problem(out)["outcome"] == "not_applied"
        resp = await slow
        assert resp.status == 200  # the other connection's request was unaffected
        resp.release()
        seen = sum((b.seen for b in backends["local"]), start=Counter[str]())
        assert set(seen) == {"GET /healthz", "GET /v1/slow"}  # nothing bad got through


async def test_limits_answer_431_414_413_408() -> None:
    async with gateway_over(two(), header_timeout_s=0.3) as (gw, _url):
        port = gw.bound_ports()[0]
        huge = b"GET /v1/kv/x HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n"
        assert (await raw(port, huge)).startswith(b"HTTP/1.1 431")
        many = b"".join(b"X-H%d: v\r\n" % i for i in range(150))
        assert (await raw(port, b"GET / HTTP/1.1\r\n" + many + b"\r\n")).startswith(b"HTTP/1.1 431")
        long_url = b"GET /v1/kv/" + b"k" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"
        assert (await raw(port, long_url)).startswith(b"HTTP/1.1 414")
        big = b"PUT /v1/kv/x HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (5 << 20)
        assert (await raw(port, big)).startswith(b"HTTP/1.1 413")
        # a head that never finishes (slowloris): 408 after header_timeout_s (swept each second)
        out = await raw(port, b"GET /v1/kv/x HTTP/1.1\r\nHost: x\r\n", read_s=3.0)
        assert out.startswith(b"HTTP/1.1 408"), out


async def test_a_flood_gets_429_and_503_not_a_crash() -> None:
    slow = [Backend("local")]
    async with gateway_over({"local": slow}, max_inflight=4, max_connections=40) as (gw, url):
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:

            async def one() -> int:
                async with http.get(url + "/v1/slow?s=0.4") as r:
                    if r.status == 429:
                        assert r.headers["Retry-After"] == "1"
                        assert (await r.json())["outcome"] == "not_applied"
                    return r.status

            statuses = await asyncio.gather(*(one() for _ in range(30)))
        assert statuses.count(200) == 4
        assert statuses.count(429) == 26
        port = gw.bound_ports()[0]
        held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(40)]
        out = await raw(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert out.startswith(b"HTTP/1.1 503"), out
        for _, w in held:
            w.close()
        await asyncio.sleep(0.1)
        async with aiohttp.ClientSession() as http, http.get(url + "/healthz") as r:
            assert r.status == 200  # and it still serves


async def test_a_dead_backend_is_skipped_and_its_requests_retried() -> None:
    live, dead = Backend("local"), Backend("local")
    async with gateway_over({"local": [live, dead]}) as (gw, url):
        await dead.stop()  # its port now refuses connections
        async with aiohttp.ClientSession() as http:
            for _ in range(20):
                async with http.post(url + "/v1/vms", json={"id": "x"}) as r:
                    assert r.status == 200  # refused before sending: safe to send elsewhere
        dead_id = f"local/127.0.0.1:{dead.port}"
        row = next(b for b in gw.balancer.describe(gw.loop.time()) if b["id"] == dead_id)
        assert row["available"] is False, (row, live.seen, dead.seen)
        assert row["known_down"] is True
        assert live.seen["POST /v1/vms"] == 20


async def test_a_write_lost_after_sending_is_answered_unknown_never_resent() -> None:
    a, b = Backend("local"), Backend("local")
    async with gateway_over({"local": [a, b]}) as (_gw, url), aiohttp.ClientSession() as http:
        async with http.post(url + "/v1/die", data=b"{}") as r:
            assert r.status == 502
            doc = await r.json()
            assert r.headers["X-Novacron-Outcome"] == "unknown"
        assert doc["outcome"] == "unknown"
        assert "may have been applied" in doc["detail"]
        assert a.seen["POST /v1/die"] + b.seen["POST /v1/die"] == 1  # never re-sent
        # a read is safe to repeat: it goes to the other backend, which also dies -> 502
        async with http.get(url + "/v1/die") as r:
            assert r.status == 502
            assert (await r.json())["outcome"] == "not_applied"  # a read changes nothing
        assert a.seen["GET /v1/die"] + b.seen["GET /v1/die"] == 2
        # a KV write with a session is deduplicated by the node: the gateway resends it
        async with http.put(
            url + "/v1/kv/die", data=b"v", headers={"X-Client-Id": "c1", "X-Request-Seq": "7"}
        ) as r:
            assert r.status == 502
            assert (await r.json())["outcome"] == "unknown"  # both attempts may have applied
        assert a.seen["PUT /v1/kv/die"] + b.seen["PUT /v1/kv/die"] == 2


async def test_not_applied_503_is_retried_until_a_leader_answers() -> None:
    only = Backend("local", flaky_503=3)
    async with gateway_over({"local": [only]}) as (gw, url), aiohttp.ClientSession() as http:
        async with http.post(url + "/v1/flaky", data=b"{}") as r:
            assert r.status == 200
        assert only.seen["POST /v1/flaky"] == 4
        assert gw.stats.retries["not_applied_503"] == 3


async def test_regions_hints_and_refusals() -> None:
    regions = {"us-east1": [Backend("us-east1")], "europe-west1": [Backend("europe-west1")]}
    async with gateway_over(regions) as (gw, url), aiohttp.ClientSession() as http:
        async with http.get(url + "/v1/kv/a") as r:
            assert r.headers["X-Novacron-Backend"].startswith("us-east1/")  # the first: home
        async with http.get(url + "/v1/kv/a", headers={"X-Novacron-Region": "europe-west1"}) as r:
            assert r.headers["X-Novacron-Backend"].startswith("europe-west1/")
        async with http.get(url + "/v1/kv/a", headers={"X-Novacron-Region": "mars"}) as r:
            assert r.status == 400
            assert "X-Novacron-Region" in (await r.json())["detail"]
        paris = {"X-Client-Location": "48.86,2.35"}
        async with http.post(url + "/v1/vms", data=b"{}", headers=paris) as r:
            assert r.headers["X-Novacron-Backend"].startswith("europe-west1/")
        async with http.get(url + "/v1/kv/a", headers={"X-Client-Location": "north"}) as r:
            assert r.status == 400
        async with http.post(url + "/v1/cluster/members", json={}) as r:
            assert r.status == 403
        async with http.get(url + "/etc/passwd") as r:
            assert r.status == 404
            assert r.headers["Content-Type"] == "application/problem+json"
        # a VM's home is learned from a node's answer, then its requests go there
        async with http.get(
            url + "/v1/vms/vm-7", headers={"X-Novacron-Region": "europe-west1"}
        ) as r:
            assert (await r.json())["home_region"] == "europe-west1"
        assert gw.homes.get("vm-7") == "europe-west1"
        for _ in range(3):
            async with http.post(url + "/v1/vms/vm-7/power", json={"state": "on"}) as r:
                assert r.headers["X-Novacron-Backend"].startswith("europe-west1/")


async def test_own_endpoints() -> None:
    async with gateway_over(two()) as (gw, url), aiohttp.ClientSession() as http:
        for _ in range(5):
            async with http.get(url + "/v1/kv/x") as r:
                await r.read()
        async with http.get(url + "/healthz") as r:
            assert r.status == 200
        async with http.get(url + "/readyz") as r:
            assert (await r.json())["ready"] is True
        async with http.get(url + "/metrics") as r:
            text = await r.text()
        rate = re.search(r"^novacron_gateway_requests_per_second (\S+)$", text, re.M)
        assert rate is not None
        assert float(rate.group(1)) > 0
        assert 'novacron_gateway_requests_total{code="200",route="region"} 5.0' in text
        assert "novacron_gateway_request_duration_seconds_bucket" in text
        assert "novacron_gateway_backend_available" in text
        async with http.get(url + "/v1/backends") as r:
            doc = await r.json()
        assert doc["regions"]["local"] == {"backends": 2, "available": 2}
        assert {b["circuit"] for b in doc["backends"]} == {"closed"}
        async with http.post(url + "/healthz") as r:
            assert r.status == 405
        gw.stopping = True
        async with http.get(url + "/readyz") as r:
            assert r.status == 503
        gw.stopping = False


@pytest.mark.parametrize("pipelined", [2, 5])
async def test_pipelined_requests_are_answered_in_order(pipelined: int) -> None:
    async with gateway_over(two()) as (gw, _url):
        port = gw.bound_ports()[0]
        reqs = b"".join(b"GET /v1/kv/p%d HTTP/1.1\r\nHost: x\r\n\r\n" % i for i in range(pipelined))
        out = await raw(
            port, reqs + b"GET /v1/kv/last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        paths = re.findall(rb'"path": "(/v1/kv/[a-z0-9]+)"', out)
        assert paths == [b"/v1/kv/p%d" % i for i in range(pipelined)] + [b"/v1/kv/last"]
        assert json.loads(out.rsplit(b"\r\n\r\n", 1)[1])["path"] == "/v1/kv/last"


async def test_a_removed_backend_drains_then_goes() -> None:
    keep, leave = Backend("local"), Backend("local")
    async with (
        gateway_over({"local": [keep, leave]}, drain_timeout_s=5.0) as (gw, url),
        aiohttp.ClientSession() as http,
    ):
        leave_id = f"local/127.0.0.1:{leave.port}"
        keep_spec = next(
            BackendSpec(b.id, b.host, b.port, "local")
            for b in gw.balancer.by_id.values()
            if b.id != leave_id
        )
        # a slow request in flight on each backend, then the membership drops `leave`
        slow = [asyncio.create_task(http.get(url + "/v1/slow?s=0.6")) for _ in range(6)]
        await asyncio.sleep(0.2)
        assert gw.balancer.by_id[leave_id].active > 0
        gw.set_members("local", [keep_spec], None)
        for _ in range(10):
            async with http.get(url + "/v1/kv/x") as r:
                assert r.headers["X-Novacron-Backend"] != leave_id  # no new requests
        assert leave_id in gw.balancer.by_id  # still finishing what it has
        for t in slow:
            resp = await t
            assert resp.status == 200  # in-flight ones finish
            resp.release()
        await asyncio.sleep(0.05)
        assert leave_id not in gw.balancer.by_id  # and then it is gone
        assert leave.seen["GET /v1/slow"] > 0


async def test_a_backend_that_never_answers_times_out_honestly() -> None:
    async with (
        gateway_over({"local": [Backend("local")]}, upstream_timeout_s=0.5) as (_gw, url),
        aiohttp.ClientSession() as http,
    ):
        t = asyncio.get_running_loop().time()
        async with http.post(url + "/v1/slow?s=5", data=b"{}") as r:
            assert r.status == 504
            assert (await r.json())["outcome"] == "unknown"  # it may still apply it
        # expired by the once-a-second sweep: within the timeout plus a second
        assert asyncio.get_running_loop().time() - t < 3.0
        async with http.get(url + "/v1/slow?s=5") as r:
            assert r.status == 504
            assert (await r.json())["outcome"] == "not_applied"  # a read changes nothing


async def test_a_client_leaving_mid_stream_is_not_blamed_on_the_backend() -> None:
    async with gateway_over({"local": [Backend("local")]}) as (gw, _url):
        port = gw.bound_ports()[0]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /v1/stream?n=512 HTTP/1.1\r\nHost: x\r\n\r\n")
        await reader.readexactly(100_000)  # a little of 8 MiB, then leave
        writer.close()
        for _ in range(100):
            if gw.pool.counts()["busy"] == 0:
                break
            await asyncio.sleep(0.05)
        assert gw.pool.counts()["busy"] == 0  # the exchange ran to its end
        (row,) = gw.balancer.describe(gw.loop.time())
        assert row["available"] is True
        assert row["ejections"] == 0
        assert row["circuit"] == "closed"
