"""IPsec: configuration generation only. This kernel has no ESP transform (``ip xfrm state
add ... proto esp`` fails: "Requested type not found"), so nothing here is brought up or
tested on the wire; the agent does not run IKE. What it gives is the strongSwan ``swanctl``
connection for one tunnel (route-based, an XFRM interface with ``if_id``), for operators who
run strongSwan beside the agent where the kernel has IPsec."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass


@dataclass(frozen=True)
class IpsecSpec:
    name: str  # connection name
    local: str  # underlay address here
    remote: str  # underlay address of the peer
    local_id: str  # IKE identity (the member name)
    remote_id: str
    local_ts: str  # traffic selector here (CIDR)
    remote_ts: str
    if_id: int  # XFRM interface id
    psk_secret: str = ""  # pre-shared key; empty: certificates (pubkey auth)

    def __post_init__(self) -> None:
        for f in ("local", "remote"):
            ipaddress.ip_address(getattr(self, f))
        for f in ("local_ts", "remote_ts"):
            ipaddress.ip_network(getattr(self, f), strict=False)
        if not 0 < self.if_id < 1 << 32:
            raise ValueError(f"if_id: within 1..4294967295, not {self.if_id}")


def swanctl_conf(spec: IpsecSpec) -> str:
    """One ``connections`` (and, with a PSK, ``secrets``) block of ``swanctl.conf``:
    IKEv2, AES-GCM-256 / SHA-384 / ECP-384 proposals, tunnel mode, DPD restart."""
    auth = "psk" if spec.psk_secret else "pubkey"
    lines = [
        "connections {",
        f"  {spec.name} {{",
        "    version = 2",
        f"    local_addrs = {spec.local}",
        f"    remote_addrs = {spec.remote}",
        "    proposals = aes256gcm16-prfsha384-ecp384",
        "    dpd_delay = 10s",
        f"    if_id_in = {spec.if_id}",
        f"    if_id_out = {spec.if_id}",
        f"    local {{ auth = {auth}\n      id = {spec.local_id} }}",
        f"    remote {{ auth = {auth}\n      id = {spec.remote_id} }}",
        "    children {",
        f"      {spec.name} {{",
        f"        local_ts = {spec.local_ts}",
        f"        remote_ts = {spec.remote_ts}",
        "        mode = tunnel",
        "        esp_proposals = aes256gcm16-ecp384",
        "        dpd_action = restart",
        "        start_action = start",
        "      }",
        "    }",
        "  }",
        "}",
    ]
    if spec.psk_secret:
        lines += [
            "secrets {",
            f"  ike-{spec.name} {{",
            f"    id-1 = {spec.local_id}",
            f"    id-2 = {spec.remote_id}",
            f'    secret = "{spec.psk_secret}"',
            "  }",
            "}",
        ]
    return "\n".join(lines) + "\n"
