"""The active checks the balancer schedules, performed against real servers: TCP, HTTP,
HTTPS (verified against the CA the gateway is given) and the custom node-member check."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from pathlib import Path

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from novacron_core.balancing import Backend, CheckSpec, Verdict
from novacron_core.runtime.gateway.checks import probe
from tests.runtime.procs import free_ports


def self_signed(tmp: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 that is its own CA."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            False,
        )
        .sign(key, hashes.SHA256())
    )
    crt, pem = tmp / "cert.pem", tmp / "key.pem"
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return crt, pem


async def serve(
    app: web.Application, ctx: ssl.SSLContext | None = None
) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    (port,) = free_ports(1)
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=ctx).start()
    return runner, port


def app(status: int = 200, cluster: dict[str, object] | None = None) -> web.Application:
    a = web.Application()

    async def health(_: web.Request) -> web.Response:
        return web.json_response({"ok": status == 200}, status=status)

    async def members(_: web.Request) -> web.Response:
        return web.json_response(cluster or {})

    a.router.add_get("/healthz", health)
    a.router.add_get("/v1/cluster", members)
    return a


async def test_tcp_and_http_checks() -> None:
    runner, port = await serve(app())
    bad, bad_port = await serve(app(status=500))
    (closed,) = free_ports(1)
    try:
        ok = Backend("a", "127.0.0.1", port)
        assert (await probe(ok, CheckSpec(kind="tcp"), None))[0] is Verdict.OK
        assert (await probe(ok, CheckSpec(kind="http"), None))[0] is Verdict.OK
        verdict, detail = await probe(Backend("b", "127.0.0.1", bad_port), CheckSpec(), None)
        assert verdict is Verdict.FAILED
        assert "500" in detail
        gone = Backend("c", "127.0.0.1", closed)
        assert (await probe(gone, CheckSpec(kind="tcp"), None))[0] is Verdict.REFUSED
        assert (await probe(gone, CheckSpec(kind="http"), None))[0] is Verdict.REFUSED
        wide = CheckSpec(expect_status=(200, 599))
        assert (await probe(Backend("b", "127.0.0.1", bad_port), wide, None))[0] is Verdict.OK
    finally:
        await runner.cleanup()
        await bad.cleanup()


async def test_https_check_verifies_against_the_given_ca(tmp_path: Path) -> None:
    crt, key = self_signed(tmp_path)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(crt, key)
    runner, port = await serve(app(), server_ctx)
    try:
        b = Backend("a", "127.0.0.1", port)
        trusted = ssl.create_default_context(cafile=str(crt))
        assert (await probe(b, CheckSpec(kind="https"), trusted))[0] is Verdict.OK
        verdict, detail = await probe(b, CheckSpec(kind="https"), None)  # system CAs only
        assert verdict is Verdict.FAILED
        assert "CERTIFICATE_VERIFY_FAILED" in detail or "certificate" in detail.lower()
    finally:
        await runner.cleanup()


async def test_custom_member_check_follows_the_nodes_own_view() -> None:
    member = {"id": "n1", "voters": ["n1", "n2"], "learners": [], "rejoining": False}
    removed = {"id": "n3", "voters": ["n1", "n2"], "learners": []}
    rejoining = {"id": "n1", "voters": ["n1"], "learners": [], "rejoining": True}
    spec = CheckSpec(kind="custom", custom="novacron-member")
    for doc, expect in (
        (member, Verdict.OK),
        (removed, Verdict.FAILED),
        (rejoining, Verdict.FAILED),
    ):
        runner, port = await serve(app(cluster=doc))
        try:
            assert (await probe(Backend("x", "127.0.0.1", port), spec, None))[0] is expect
        finally:
            await runner.cleanup()
    unknown = CheckSpec(kind="custom", custom="nope")
    verdict, detail = await probe(Backend("x", "127.0.0.1", 1), unknown, None)
    assert verdict is Verdict.FAILED
    assert "nope" in detail
