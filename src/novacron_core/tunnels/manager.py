"""The tunnel manager: makes the tunnel interfaces of one network namespace match a desired
list of :class:`TunnelSpec`, over pyroute2 (netlink).

Backends, chosen per kind by trying the kernel once (a scratch link of that kind):

======== ======================================= ==========================================
kind     kernel (where the module exists)        userspace (same interface, same wire)
======== ======================================= ==========================================
vxlan    ``vxlan`` link                          (none: VXLAN is in nearly every kernel)
gre      ``gre`` link (``ip_gre``)               ``tunnels/usergre.py``: TUN + raw socket
wireguard ``wireguard`` link, keys by netlink    ``wireguard-go``, keys over its UAPI socket
======== ======================================= ==========================================

Idempotent: :meth:`TunnelManager.reconcile` reads what exists (link kind and attributes,
addresses, the WireGuard configuration, the helper process) and changes only what differs, so
calling it twice changes nothing the second time. Everything it creates is named with the
prefix (``nct``); a userspace helper leaves a pidfile and the spec it serves in ``state_dir``.
An interface with the prefix or a helper with a pidfile that the desired list does not name is
an orphan (a crash, a removed peer) and is removed by the next reconcile, so the next start
cleans whatever a crash left.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pyroute2 import IPRoute, WireGuard
from pyroute2.netlink.exceptions import NetlinkError

from novacron_core.tunnels import wgtools
from novacron_core.tunnels.spec import PREFIX, Kind, TunnelSpec

Backend = Literal["kernel", "userspace"]
DEFAULT_MTU = {"vxlan": 1450, "gre": 1476, "wireguard": 1420}
GRE_KEY = 0x2000  # GRE_KEY flag for IFLA_GRE_[IO]FLAGS


class TunnelError(RuntimeError):
    pass


@dataclass(frozen=True)
class Status:
    name: str
    exists: bool
    matches: bool
    up: bool
    backend: Backend | None
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.exists and self.matches and self.up


@dataclass
class Reconciled:
    created: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.created or self.replaced or self.removed)

    def as_dict(self) -> dict[str, list[str]]:
        return {
            "created": self.created,
            "replaced": self.replaced,
            "removed": self.removed,
            "unchanged": self.unchanged,
        }


class TunnelManager:
    def __init__(
        self,
        state_dir: str | Path,
        netns: str | None = None,
        prefix: str = PREFIX,
        wireguard_go: str | None = None,
        force_userspace: Iterable[Kind] = (),
    ) -> None:
        self.netns = netns
        self.prefix = prefix
        self.state_dir = Path(state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.wireguard_go = wireguard_go
        self._backends: dict[Kind, Backend] = {k: "userspace" for k in force_userspace}
        self._procs: dict[int, subprocess.Popen[str]] = {}  # our helpers, to reap

    # ------------------------------------------------------------------ plumbing

    def _ipr(self) -> IPRoute:
        return IPRoute(netns=self.netns) if self.netns else IPRoute()

    def _exec(self, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.netns, *argv] if self.netns else argv

    def backend(self, kind: Kind) -> Backend:
        """kernel if this kernel can create a link of that kind here, else userspace."""
        if kind not in self._backends:
            if kind == "vxlan":
                self._backends[kind] = "kernel"
            else:
                probe = f"{self.prefix}probe"
                with self._ipr() as ipr:
                    try:
                        ipr.link("add", ifname=probe, kind=kind, **_probe_args(kind))
                        ipr.link("del", ifname=probe)
                        self._backends[kind] = "kernel"
                    except NetlinkError:
                        self._backends[kind] = "userspace"
        return self._backends[kind]

    def links(self) -> dict[str, dict[str, Any]]:
        """Every link with our prefix here: name -> {index, kind, up, data, addresses}."""
        out: dict[str, dict[str, Any]] = {}
        with self._ipr() as ipr:
            for msg in ipr.get_links():
                name = msg.get_attr("IFLA_IFNAME")
                if not name or not name.startswith(self.prefix):
                    continue
                info = msg.get_attr("IFLA_LINKINFO")
                kind = info.get_attr("IFLA_INFO_KIND") if info is not None else None
                data = info.get_attr("IFLA_INFO_DATA") if info is not None else None
                attrs = dict(data["attrs"]) if data is not None else {}
                idx = msg["index"]
                addrs = sorted(
                    f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}"
                    for a in ipr.get_addr(index=idx, family=2)
                )
                out[name] = {
                    "index": idx,
                    "kind": kind or "tun",
                    "up": bool(msg["flags"] & 1),
                    "mtu": msg.get_attr("IFLA_MTU"),
                    "data": attrs,
                    "addresses": addrs,
                }
        return out

    # ------------------------------------------------------------------ helpers' records

    def _record(self, name: str) -> dict[str, Any] | None:
        path = self.state_dir / f"{name}.json"
        try:
            rec: dict[str, Any] = json.loads(path.read_text())
            return rec
        except (OSError, ValueError):
            return None

    def _records(self) -> list[str]:
        return sorted(p.stem for p in self.state_dir.glob(f"{self.prefix}*.json"))

    def _helper_alive(self, name: str) -> int | None:
        rec = self._record(name)
        pid = rec.get("pid") if rec else None
        if not isinstance(pid, int):
            return None
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return None
        # a pid the kernel gave to some other process since is not ours to kill
        return pid if name.encode() in cmdline else None

    def _stop_helper(self, name: str) -> None:
        pid = self._helper_alive(name)
        if pid is not None:
            try:
                os.kill(pid, signal.SIGTERM)
                for _ in range(50):
                    if self._helper_alive(name) is None or _zombie(pid):
                        break
                    time.sleep(0.05)
                else:
                    os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc = self._procs.pop(pid, None)
            if proc is not None:
                proc.wait(timeout=5)
        (self.state_dir / f"{name}.json").unlink(missing_ok=True)

    # ------------------------------------------------------------------ check

    def check(self, spec: TunnelSpec, links: dict[str, dict[str, Any]] | None = None) -> Status:
        links = self.links() if links is None else links
        have = links.get(spec.name)
        backend = self.backend(spec.kind)
        if have is None:
            return Status(spec.name, False, False, False, backend, "no such interface")
        why = self._mismatch(spec, have, backend)
        return Status(spec.name, True, not why, bool(have["up"]), backend, why)

    def _mismatch(self, spec: TunnelSpec, have: dict[str, Any], backend: Backend) -> str:
        if spec.address not in have["addresses"]:
            return f"address {spec.address} missing (has {have['addresses']})"
        if have["mtu"] != (spec.mtu or DEFAULT_MTU[spec.kind]):
            return f"mtu {have['mtu']}"
        d = have["data"]
        if backend == "kernel":
            if have["kind"] != spec.kind:
                return f"kind {have['kind']}"
            if spec.kind == "vxlan":
                want = (spec.key, spec.local, spec.remote, spec.dst_port)
                got = tuple(
                    d.get(k)
                    for k in (
                        "IFLA_VXLAN_ID",
                        "IFLA_VXLAN_LOCAL",
                        "IFLA_VXLAN_GROUP",
                        "IFLA_VXLAN_PORT",
                    )
                )
                return "" if got == want else f"vxlan {got} != {want}"
            if spec.kind == "gre":
                gre = (d.get("IFLA_GRE_LOCAL"), d.get("IFLA_GRE_REMOTE"), d.get("IFLA_GRE_IKEY"))
                gre_want = (spec.local, spec.remote, spec.key)
                return "" if gre == gre_want else f"gre {gre} != {gre_want}"
            return "" if self._wg_kernel_matches(spec) else "wireguard configuration differs"
        # userspace: the helper must be alive and serving this very spec
        rec = self._record(spec.name)
        if self._helper_alive(spec.name) is None or rec is None:
            return "helper process not running"
        if rec.get("fingerprint") != spec.fingerprint():
            return "helper serves another configuration"
        if spec.kind == "wireguard":
            try:
                return (
                    ""
                    if wgtools.matches(spec, wgtools.uapi(spec.name, "get=1\n"))
                    else ("wireguard configuration differs")
                )
            except wgtools.WireGuardError as e:
                return str(e)
        return ""

    def _wg_kernel_matches(self, spec: TunnelSpec) -> bool:
        with WireGuard(netns=self.netns) as wg:
            msg = wg.info(spec.name)[0]
        attrs = dict(msg["attrs"])
        peers = attrs.get("WGDEVICE_A_PEERS") or []
        if attrs.get("WGDEVICE_A_LISTEN_PORT") != spec.dst_port or len(peers) != 1:
            return False
        return bool(peers[0].get_attr("WGPEER_A_PUBLIC_KEY") == spec.peer_public_key.encode())

    # ------------------------------------------------------------------ change

    def reconcile(self, specs: Iterable[TunnelSpec]) -> Reconciled:
        wanted = list(specs)
        desired = {s.name: s for s in wanted}
        if len(desired) != len(wanted):
            raise TunnelError("tunnels: two specs share one interface name")
        out = Reconciled()
        links = self.links()
        for name in sorted(set(links) | set(self._records())):
            if name not in desired:
                self.remove(name)
                out.removed.append(name)
        links = self.links()
        for name, spec in sorted(desired.items()):
            st = self.check(spec, links)
            if st.ok:
                out.unchanged.append(name)
                continue
            if st.exists or self._record(name) is not None:
                self.remove(name)
                out.replaced.append(name)
            else:
                out.created.append(name)
            self.create(spec)
        return out

    def create(self, spec: TunnelSpec) -> None:
        backend = self.backend(spec.kind)
        try:
            if backend == "userspace":
                self._start_helper(spec)
            with self._ipr() as ipr:
                if backend == "kernel":
                    ipr.link("add", ifname=spec.name, kind=spec.kind, **_kernel_args(spec))
                idx = _index(ipr, spec.name)
                ipr.link("set", index=idx, mtu=spec.mtu or DEFAULT_MTU[spec.kind])
                ip, plen = spec.address.split("/")
                ipr.addr("add", index=idx, address=ip, prefixlen=int(plen))
                if backend == "kernel" and spec.kind == "wireguard":
                    self._wg_kernel_set(spec)
                ipr.link("set", index=idx, state="up")
                for net in spec.routes:
                    if net != spec.overlay_network:
                        dst, dlen = net.split("/")
                        ipr.route("replace", dst=dst, dst_len=int(dlen), oif=idx)
        except (NetlinkError, OSError, wgtools.WireGuardError) as e:
            self.remove(spec.name)
            raise TunnelError(f"{spec.name} ({spec.kind}, {backend}): {e}") from e

    def _wg_kernel_set(self, spec: TunnelSpec) -> None:
        peer = {
            "public_key": spec.peer_public_key,
            "endpoint_addr": spec.remote,
            "endpoint_port": spec.peer_port,
            "persistent_keepalive": spec.keepalive,
            "allowed_ips": list(spec.routes),
        }
        with WireGuard(netns=self.netns) as wg:
            wg.set(spec.name, private_key=spec.private_key, listen_port=spec.dst_port, peer=peer)

    def _start_helper(self, spec: TunnelSpec) -> None:
        if spec.kind == "gre":
            argv = [sys.executable, "-m", "novacron_core.tunnels.usergre", spec.name]
            argv += [spec.local, spec.remote, str(spec.key) if spec.key else "-"]
        else:
            binary = self.wireguard_go or wgtools.find_wireguard_go()
            if binary is None:
                raise TunnelError(
                    f"{spec.name}: the kernel has no wireguard module and no wireguard-go was "
                    "found (run e2e/wireguard/build.sh or set NOVACRON_WIREGUARD_GO)"
                )
            argv = [binary, "-f", spec.name]
        env = {**os.environ, "LOG_LEVEL": "error", "WG_PROCESS_FOREGROUND": "1"}
        proc = subprocess.Popen(
            self._exec(argv),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if spec.kind == "gre" else subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # outlives the agent when tunnels are kept on exit
            env=env,
            text=True,
        )
        self._procs[proc.pid] = proc
        rec = {"pid": proc.pid, "fingerprint": spec.fingerprint(), "kind": spec.kind}
        (self.state_dir / f"{spec.name}.json").write_text(json.dumps(rec))
        deadline = time.monotonic() + 10
        if spec.kind == "gre":
            assert proc.stdout is not None
            line = proc.stdout.readline().strip()
            proc.stdout.close()
            if line != "ready":
                raise TunnelError(f"{spec.name}: userspace GRE did not start ({proc.poll()})")
        else:
            sock = wgtools.UAPI_DIR / f"{spec.name}.sock"
            while not sock.exists():
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise TunnelError(f"{spec.name}: wireguard-go did not start ({proc.poll()})")
                time.sleep(0.02)
            wgtools.uapi(spec.name, wgtools.set_request(spec))

    def remove(self, name: str) -> None:
        if not name.startswith(self.prefix):
            raise TunnelError(f"{name}: not ours (no {self.prefix!r} prefix)")
        self._stop_helper(name)
        with self._ipr() as ipr:
            try:
                ipr.link("del", index=_index(ipr, name))
            except (NetlinkError, TunnelError):
                pass  # already gone (a helper's TUN goes with it)
        (wgtools.UAPI_DIR / f"{name}.sock").unlink(missing_ok=True)

    def remove_all(self) -> list[str]:
        names = sorted(set(self.links()) | set(self._records()))
        for name in names:
            self.remove(name)
        return names


def _index(ipr: IPRoute, name: str) -> int:
    found = ipr.link_lookup(ifname=name)
    if not found:
        raise TunnelError(f"{name}: no such interface")
    return int(found[0])


def _kernel_args(spec: TunnelSpec) -> dict[str, Any]:
    if spec.kind == "vxlan":
        return {
            "vxlan_id": spec.key,
            "vxlan_local": spec.local,
            "vxlan_group": spec.remote,
            "vxlan_port": spec.dst_port,
        }
    if spec.kind == "gre":
        args: dict[str, Any] = {"gre_local": spec.local, "gre_remote": spec.remote, "gre_ttl": 64}
        if spec.key:
            args.update(
                gre_ikey=spec.key, gre_okey=spec.key, gre_iflags=GRE_KEY, gre_oflags=GRE_KEY
            )
        return args
    return {}


def _probe_args(kind: Kind) -> dict[str, Any]:
    if kind == "gre":
        return {"gre_local": "127.0.0.1", "gre_remote": "127.0.0.2"}
    return {}


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z"
    except OSError:
        return True
