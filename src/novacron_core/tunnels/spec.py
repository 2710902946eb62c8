"""What a tunnel should be: kind, ends, overlay address, keys. Plus WireGuard key handling
and the Kubernetes Secret the keys live in.

Every interface the tunnel manager owns is named ``PREFIX`` + kind letter + a hash of the
peer, at most 15 characters (the kernel's limit): anything with the prefix that the desired
state does not name is an orphan and is removed on the next reconcile.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

Kind = Literal["vxlan", "gre", "wireguard"]
KINDS: tuple[Kind, ...] = ("vxlan", "gre", "wireguard")
PREFIX = "nct"
IFNAMSIZ = 15
VXLAN_PORT = 4789
WIREGUARD_PORT = 51820


class SpecError(ValueError):
    pass


def tunnel_name(kind: Kind, peer: str, prefix: str = PREFIX) -> str:
    digest = hashlib.blake2b(peer.encode(), digest_size=4).hexdigest()
    return f"{prefix}{kind[0]}{digest}"[:IFNAMSIZ]


@dataclass(frozen=True)
class TunnelSpec:
    name: str
    kind: Kind
    local: str  # underlay address of this end
    remote: str  # underlay address of the other end
    address: str  # overlay address of this end, CIDR (e.g. 198.19.253.1/30)
    key: int = 0  # VXLAN VNI / GRE key (0: none for GRE)
    port: int = 0  # VXLAN destination port / WireGuard listen port (0: the default)
    remote_port: int = 0  # WireGuard: the peer's listen port (0: the default)
    private_key: str = ""  # WireGuard, base64
    peer_public_key: str = ""  # WireGuard, base64
    allowed_ips: tuple[str, ...] = ()  # WireGuard; default: the overlay network
    mtu: int = 0  # 0: the kind's default
    keepalive: int = 0  # WireGuard persistent keepalive seconds (0: off)
    peer: str = field(default="", compare=True)  # who is at the other end (for status)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise SpecError(f"kind: one of {', '.join(KINDS)}, not {self.kind!r}")
        if not self.name.startswith(PREFIX) or len(self.name) > IFNAMSIZ:
            raise SpecError(f"name: must start with {PREFIX!r}, <= {IFNAMSIZ} chars: {self.name!r}")
        for fname in ("local", "remote"):
            try:
                ipaddress.IPv4Address(getattr(self, fname))
            except ValueError:
                raise SpecError(f"{fname}: an IPv4 address, not {getattr(self, fname)!r}") from None
        try:
            ipaddress.IPv4Interface(self.address)
        except ValueError:
            raise SpecError(f"address: an IPv4 CIDR, not {self.address!r}") from None
        if self.kind == "vxlan" and not 0 < self.key < 1 << 24:
            raise SpecError(f"key: a VXLAN VNI within 1..16777215, not {self.key}")
        if not 0 <= self.key < 1 << 32:
            raise SpecError(f"key: within 0..4294967295, not {self.key}")
        if self.kind == "wireguard":
            for fname in ("private_key", "peer_public_key"):
                try:
                    raw = base64.b64decode(getattr(self, fname), validate=True)
                except ValueError:
                    raw = b""
                if len(raw) != 32:
                    raise SpecError(f"{fname}: a base64 WireGuard key (32 bytes)")

    @property
    def dst_port(self) -> int:
        return self.port or (VXLAN_PORT if self.kind == "vxlan" else WIREGUARD_PORT)

    @property
    def peer_port(self) -> int:
        return self.remote_port or WIREGUARD_PORT

    @property
    def overlay_network(self) -> str:
        return str(ipaddress.IPv4Interface(self.address).network)

    @property
    def routes(self) -> tuple[str, ...]:
        return self.allowed_ips or (self.overlay_network,)

    def as_dict(self, secrets: bool = False) -> dict[str, Any]:
        d = asdict(self)
        d["allowed_ips"] = list(self.allowed_ips)
        if not secrets and d["private_key"]:
            d["private_key"] = "<redacted>"
        return d

    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(self.as_dict(True), sort_keys=True).encode()).hexdigest()

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TunnelSpec:
        d = dict(d)
        d["allowed_ips"] = tuple(d.get("allowed_ips") or ())
        return cls(**d)


# ---------------------------------------------------------------- WireGuard keys


def generate_private_key() -> str:
    key = X25519PrivateKey.generate()
    raw = key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    return base64.b64encode(raw).decode()


def public_key(private_b64: str) -> str:
    key = X25519PrivateKey.from_private_bytes(base64.b64decode(private_b64))
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode()


def b64_to_hex(key_b64: str) -> str:
    return base64.b64decode(key_b64).hex()


def hex_to_b64(key_hex: str) -> str:
    return base64.b64encode(bytes.fromhex(key_hex)).decode()


def secret_manifest(name: str, namespace: str, members: dict[str, str]) -> dict[str, Any]:
    """The Secret the operator keeps WireGuard keys in: one ``<member>.key`` (private, for
    that member's agent only through its projected volume) and ``<member>.pub`` per member.
    ``members`` maps member -> base64 private key."""
    data: dict[str, str] = {}
    for member, private in sorted(members.items()):
        data[f"{member}.key"] = private
        data[f"{member}.pub"] = public_key(private)
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {"name": name, "namespace": namespace},
        "stringData": data,
    }


def load_keys(directory: str | Path, me: str) -> tuple[str, dict[str, str]]:
    """(my private key, {member: public key}) from a mounted Secret directory."""
    d = Path(directory)
    mine = d / f"{me}.key"
    if not mine.exists():
        raise SpecError(f"tunnels.keysDir: {mine} is missing (the Secret has no key for {me!r})")
    private = mine.read_text().strip()
    pubs = {p.name[: -len(".pub")]: p.read_text().strip() for p in sorted(d.glob("*.pub"))}
    return private, pubs
