"""Peer transport in-process: delivery, reconnect after the peer restarts, mutual TLS."""

from __future__ import annotations

import asyncio
import datetime
import ssl
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from novacron_core.consensus.raft.messages import PEER_MESSAGES, Vote
from novacron_core.runtime.transport import Addr, Hello, Transport, tls_contexts
from novacron_core.sync.messages import Push
from tests.runtime.procs import free_ports

ACCEPT = (*PEER_MESSAGES, Push)  # a node accepts its group's and its federation's messages


def _cert(
    name: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Certificate | None, signer: Any
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    b = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), True)
    )
    if issuer is not None:
        b = b.add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), False)
    return b.sign(signer, hashes.SHA256())


def _pki(tmp: Path, ca_name: str = "ca") -> tuple[str, str, str]:
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert(ca_name, ca_key, None, ca_key)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _cert("node", key, ca, ca_key)
    paths = tmp / f"{ca_name}.pem", tmp / f"{ca_name}-node.pem", tmp / f"{ca_name}-node.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return str(paths[1]), str(paths[2]), str(paths[0])


async def _pair(
    server: ssl.SSLContext | None,
    client: ssl.SSLContext | None,
) -> tuple[Transport, Transport, list[tuple[str, Any]], Addr]:
    got: list[tuple[str, Any]] = []
    pa, pb = free_ports(2)
    a = Transport(
        "a", lambda h, m: None, client_ssl=client, accept=ACCEPT, advertise=f"127.0.0.1:{pa}"
    )
    b = Transport("b", lambda h, m: got.append((h.node, m)), server_ssl=server, accept=ACCEPT)
    await b.start("127.0.0.1", pb)
    return a, b, got, ("127.0.0.1", pb)


async def _until(cond: Any, limit: float = 5.0) -> bool:
    for _ in range(int(limit / 0.02)):
        if cond():
            return True
        await asyncio.sleep(0.02)
    return False


async def test_group_and_federation_messages_share_one_link_and_survive_a_peer_restart() -> None:
    a, b, got, at_b = await _pair(None, None)
    push = Push.of([], epoch=3, relay=True)
    try:
        a.send(at_b, Vote(1, 0, 0))
        a.send(at_b, push)
        assert await _until(lambda: got == [("a", Vote(1, 0, 0)), ("a", push)])
        assert a.links == [at_b]  # one link per peer address carries both
        await b.close()
        await asyncio.sleep(0.1)
        b2 = Transport("b", lambda h, m: got.append((h.node, m)), accept=ACCEPT)
        await b2.start(*at_b)
        # Messages sent while the link is broken may be lost; the protocols retransmit.
        assert await _until(lambda: (a.send(at_b, Vote(2, 0, 0)), ("a", Vote(2, 0, 0)) in got)[1])
        await b2.close()
    finally:
        await a.close()
        await b.close()


async def test_mutual_tls_accepts_our_ca_and_rejects_a_stranger(tmp_path: Path) -> None:
    server, client = tls_contexts(*_pki(tmp_path, "ca"))
    _, stranger = tls_contexts(*_pki(tmp_path, "other"))
    assert server is not None
    a, b, got, at_b = await _pair(server, client)
    try:
        a.send(at_b, Vote(7, 0, 0))
        assert await _until(lambda: ("a", Vote(7, 0, 0)) in got)
    finally:
        await a.close()
    # A peer with a certificate from another CA: the handshake fails, nothing is delivered.
    intruder = Transport("evil", lambda h, m: None, client_ssl=stranger, accept=ACCEPT)
    try:
        intruder.send(at_b, Vote(99, 0, 0))
        assert not await _until(lambda: any(src == "evil" for src, _ in got), limit=1.0)
    finally:
        await intruder.close()
        await b.close()


async def test_the_first_message_after_a_peer_restarted_is_not_lost_and_closes_are_reported() -> (
    None
):
    # b restarts while a has nothing to send it (followers do not talk to each other until
    # an election): a's link notices the close at once, so the first message after the
    # restart — in real life a PreVote — goes out on a fresh link, not into the dead one.
    lost: list[Any] = []
    got: list[tuple[str, Any]] = []
    (pb,) = free_ports(1)
    at_b = ("127.0.0.1", pb)
    a = Transport(
        "a", lambda h, m: None, on_unreachable=lambda n, ad: lost.append(ad), accept=ACCEPT
    )
    b = Transport("b", lambda h, m: got.append((h.node, m)), accept=ACCEPT)
    await b.start(*at_b)
    b2: Transport | None = None
    try:
        a.send(at_b, Vote(1, 0, 0))
        assert await _until(lambda: ("a", Vote(1, 0, 0)) in got)
        await b.close()
        assert await _until(lambda: at_b in lost)  # reported without a.send
        b2 = Transport("b", lambda h, m: got.append((h.node, m)), accept=ACCEPT)
        await b2.start(*at_b)
        await asyncio.sleep(1.2)  # past a's longest reconnect backoff
        a.send(at_b, Vote(2, 0, 0))
        assert await _until(lambda: ("a", Vote(2, 0, 0)) in got, limit=1.0)
    finally:
        await a.close()
        if b2 is not None:
            await b2.close()


async def test_a_closed_inbound_link_is_reported_with_its_sender() -> None:
    lost: list[Any] = []
    pa, pb = free_ports(2)
    a = Transport("a", lambda h, m: None, accept=ACCEPT, advertise=f"127.0.0.1:{pa}")
    b = Transport(
        "b", lambda h, m: None, on_unreachable=lambda n, ad: lost.append((n, ad)), accept=ACCEPT
    )
    await b.start("127.0.0.1", pb)
    try:
        a.send(("127.0.0.1", pb), Vote(1, 0, 0))
        await asyncio.sleep(0.2)
        assert lost == []
        await a.close()  # as kill -9 would: every socket of a closes
        assert await _until(lambda: lost == [("a", ("127.0.0.1", pa))])
    finally:
        await b.close()


async def test_a_full_queue_drops_the_newest_message_and_counts_it_and_links_can_be_closed() -> (
    None
):
    (port,) = free_ports(1)  # nothing listens: the link backs off, the queue fills
    a = Transport("a", lambda h, m: None, accept=ACCEPT, queue_limit=3)
    try:
        for i in range(5):
            a.send(("127.0.0.1", port), Vote(i, 0, 0))
        assert a.dropped == 2
        a.keep_only([])
        assert a.links == []
    finally:
        await a.close()


async def test_a_record_of_a_type_the_node_does_not_accept_closes_that_connection() -> None:
    a, b, got, at_b = await _pair(None, None)
    try:
        a.send(at_b, Hello("not-a-message"))  # a record, but not one peers may send
        a.send(at_b, Vote(5, 0, 0))
        assert await _until(lambda: b.bad_frames == 1)
        assert ("a", Vote(5, 0, 0)) not in got  # the rest of that connection went with it
    finally:
        await a.close()
        await b.close()
