"""NovaCronCluster -> the federation-wide mTLS CA Secret (created once, never rotated here)."""

from __future__ import annotations

import base64
import datetime as dt

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from novacron_operator.builders.common import Manifest, Owner, meta
from novacron_operator.models import NovaCronClusterSpec


def ca_secret_name(owner: Owner) -> str:
    return f"{owner.name}-ca"


def build_ca_secret(
    owner: Owner, spec: NovaCronClusterSpec, now: dt.datetime | None = None
) -> Manifest:
    """A fresh CA. Not idempotent by nature, so handlers create it only when absent."""
    now = now or dt.datetime.now(dt.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"novacron-{owner.name}-ca")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=spec.tls.ca_validity_days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    pem_cert = cert.public_bytes(serialization.Encoding.PEM)
    pem_key = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": meta(owner, ca_secret_name(owner), "ca"),
        "type": "kubernetes.io/tls",
        "data": {
            "tls.crt": base64.b64encode(pem_cert).decode(),
            "tls.key": base64.b64encode(pem_key).decode(),
            "ca.crt": base64.b64encode(pem_cert).decode(),
        },
    }


def build_cluster(owner: Owner, spec: NovaCronClusterSpec) -> list[Manifest]:
    """Objects a cluster owns that are pure functions of its spec (the CA is separate)."""
    if spec.tls.mode != "cert-manager" or spec.tls.issuer_ref is None:
        return []
    return [
        {
            "apiVersion": "cert-manager.io/v1",
            "kind": "Certificate",
            "metadata": meta(owner, ca_secret_name(owner), "ca"),
            "spec": {
                "isCA": True,
                "commonName": f"novacron-{owner.name}-ca",
                "secretName": ca_secret_name(owner),
                "duration": f"{spec.tls.ca_validity_days * 24}h",
                "privateKey": {"algorithm": "ECDSA", "size": 256},
                "issuerRef": {"name": spec.tls.issuer_ref.name, "kind": "Issuer"},
            },
        }
    ]
