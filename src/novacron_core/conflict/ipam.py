"""Per-region address pools, and the one VM rule that spans VMs: an address leased twice.

Each region leases its VMs' NIC addresses from its own pool (``pools``: region -> CIDR; by
default ``10.{16+i}.0.0/16`` for the i-th member region of the federation file). A region's
own allocations are serialized by its leader; a region writing another region's VM
(``writes: multi``) leases from that VM's pool as far as it knows it, so during a partition
two regions can lease one address to two VMs. Every replica then keeps the earlier lease
(its HLC stamp; the region breaks ties) and re-addresses the other NICs to the lowest free
addresses of their pools, in a fixed order (address, then VM, then NIC), so every replica
picks the same new addresses. The first ``RESERVED`` addresses of a pool are never leased.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from novacron_core.conflict.record import canon, stamp

RESERVED = 10


def default_pools(regions: Sequence[str]) -> dict[str, str]:
    return {r: f"10.{16 + i}.0.0/16" for i, r in enumerate(regions) if i < 200}


def parse_pools(raw: Mapping[str, Any]) -> dict[str, ipaddress.IPv4Network]:
    out: dict[str, ipaddress.IPv4Network] = {}
    for region, cidr in raw.items():
        try:
            net = ipaddress.ip_network(str(cidr), strict=True)
        except ValueError as e:
            raise ValueError(f"{region}: {e}") from None
        if not isinstance(net, ipaddress.IPv4Network) or net.num_addresses < 2 * RESERVED:
            raise ValueError(f"{region}: an IPv4 network of at least /27 expected, not {cidr}")
        out[region] = net
    return out


def allocate(pool: ipaddress.IPv4Network, used: Iterable[str]) -> str | None:
    """The lowest address of ``pool`` past the reserved ones that is not in ``used``."""
    taken = set(used)
    first = int(pool.network_address) + RESERVED
    last = int(pool.broadcast_address) - 1
    for i in range(first, last + 1):
        ip = str(ipaddress.IPv4Address(i))
        if ip not in taken:
            return ip
    return None


def addresses(record: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(nic name, address) of every NIC of a record that holds an address."""
    out = []
    for nic in record.get("nics") or []:
        if isinstance(nic, dict) and isinstance(nic.get("address"), dict):
            addr = nic["address"]
            if isinstance(addr.get("ip"), str):
                out.append((str(nic.get("name")), addr))
    return out


def used_addresses(records: Iterable[Mapping[str, Any]]) -> set[str]:
    return {a["ip"] for r in records if r.get("lifecycle") != "deleted" for _, a in addresses(r)}


@dataclass
class Readdress:
    """One NIC that lost an address leased twice, and where it goes."""

    ip: str
    vm: str
    nic: str
    lease: list[Any] | None
    kept_by: str  # the VM keeping the address
    kept_lease: list[Any] | None
    new_ip: str | None  # None: its pool is full (the NIC keeps no address)


def double_allocations(
    views: Mapping[str, Mapping[str, Any]],
    pools: Mapping[str, ipaddress.IPv4Network],
    used: Iterable[str] = (),
) -> list[Readdress]:
    """Every NIC of ``views`` that holds an address another NIC leased earlier, with the
    address it moves to (allocated past ``used`` and the views' own addresses)."""
    holders: dict[str, list[tuple[tuple[Any, ...], str, str, dict[str, Any]]]] = {}
    for vm, rec in views.items():
        if rec.get("lifecycle") == "deleted":
            continue
        for nic, addr in addresses(rec):
            t = stamp(addr.get("lease"))
            key = (0, t) if t is not None else (1, (0, 0, ""))
            holders.setdefault(addr["ip"], []).append((key, vm, nic, addr))
    taken = set(holders) | set(used)
    out: list[Readdress] = []
    for ip in sorted(holders, key=_ip_key):
        hs = sorted(holders[ip], key=lambda h: (h[0], h[1], h[2]))
        if len(hs) < 2:
            continue
        keep = hs[0]
        for _, vm, nic, addr in hs[1:]:
            pool = pools.get(str(addr.get("pool")))
            new = allocate(pool, taken) if pool is not None else None
            if new is not None:
                taken.add(new)
            out.append(
                Readdress(ip, vm, nic, addr.get("lease"), keep[1], keep[3].get("lease"), new)
            )
    return out


def _ip_key(ip: str) -> tuple[int, str]:
    try:
        return (int(ipaddress.ip_address(ip)), ip)
    except ValueError:
        return (-1, ip)


def readdressed(record: dict[str, Any], r: Readdress) -> dict[str, Any]:
    """``record`` with NIC ``r.nic`` moved to ``r.new_ip`` (a copy)."""
    out = dict(record)
    nics = []
    for nic in record.get("nics") or []:
        if isinstance(nic, dict) and nic.get("name") == r.nic:
            addr = dict(nic.get("address") or {})
            addr["ip"] = r.new_ip
            addr["readdressed_from"] = r.ip
            nic = {**nic, "address": addr}
        nics.append(nic)
    out["nics"] = nics
    return out


def key(r: Readdress) -> str:
    return canon([r.ip, r.vm, r.nic, r.lease])
