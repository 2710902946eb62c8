"""What a real node changes on the host, and how all of it is taken back.

Everything lives under fixed names so that the next start can find what a crashed run left:
one address on ``lo``, one bridge, a cgroup subtree per v1 controller, nftables/iptables
state owned by kube-proxy and kube-router, mounts and network namespaces under one
directory, and a state file naming the processes. :func:`cleanup` removes each of them,
idempotently, and reports what it could not remove instead of stopping half-way.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

# Fixed so a run after a crash knows where to look. A concurrent kwok-based control plane
# uses 127.0.0.1 and mkdtemp directories only: none of these clash with it.
RUN_ROOT = Path(os.environ.get("NOVACRON_REALNODE_ROOT", "/tmp/novacron-realnode"))
STATE = RUN_ROOT / "state.json"
LOCK = Path(str(RUN_ROOT) + ".lock")
NODE_IP = "172.30.76.1"  # on lo: kubelet refuses a loopback node IP and there is no dummy
BRIDGE = "ncr0"
POD_CIDR = ipaddress.IPv4Network("10.77.0.0/16")
GATEWAY = "10.77.0.1"
SERVICE_CIDR = ipaddress.IPv4Network("10.78.0.0/16")
KUBERNETES_SERVICE_IP = str(SERVICE_CIDR[1])
DNS_SERVICE_IP = str(SERVICE_CIDR[10])
CGROUP_ROOT = "novacron-realnode"
CGROUP_FS = Path("/sys/fs/cgroup")


def run(*cmd: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if check and out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {(out.stderr or out.stdout).strip()}")
    return out


@dataclass
class State:
    """The state file: who owns the node and which processes it started."""

    owner_pid: int | None = None  # None: detached (`devcluster up`), lives until `down`
    owner_start: str | None = None  # its start time, so a reused pid is not mistaken for it
    # name -> (pid, executable path): a pid is only signalled while it still runs that
    # executable, so a pid reused after a crash is never hit
    pids: dict[str, tuple[int, str]] = field(default_factory=dict)
    cluster_dir: str = ""

    def live(self) -> list[int]:
        out = []
        for pid, exe in self.pids.values():
            try:
                running = os.readlink(f"/proc/{pid}/exe")
            except OSError:
                continue
            if running.removesuffix(" (deleted)") == exe and alive(pid):
                out.append(pid)
        return out

    def save(self) -> None:
        RUN_ROOT.mkdir(parents=True, exist_ok=True)
        tmp = STATE.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.__dict__))
        os.replace(tmp, STATE)

    @classmethod
    def load(cls) -> State | None:
        try:
            doc = json.loads(STATE.read_text())
            doc["pids"] = {k: (int(v[0]), str(v[1])) for k, v in doc.get("pids", {}).items()}
            return cls(**doc)
        except (OSError, ValueError, TypeError, IndexError):
            return None


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(ChildProcessError):
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False  # our own child, now reaped
    try:  # a zombie is as good as gone
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[-1][:1] != "Z"
    except OSError:
        return False


def kill_all(pids: list[int], grace: float = 5.0) -> None:
    """SIGTERM each process group, then SIGKILL what is left after ``grace`` seconds."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.1)
    for pid in pids:
        if alive(pid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)


# ---------------------------------------------------------------- network


def add_node_address() -> None:
    have = run("ip", "-o", "addr", "show", "dev", "lo").stdout
    if f" {NODE_IP}/" not in have:
        run("ip", "addr", "add", f"{NODE_IP}/32", "dev", "lo")


def add_bridge() -> None:
    """The pods' bridge, made before the CNI plugin would, so the Service route can point at
    it: a host process connecting to a ClusterIP is routed before kube-proxy's DNAT, and
    without this route that first lookup would pick eth0 and send the SYN off the machine
    whenever the DNAT is missing (kube-proxy still starting, Service gone)."""
    if run("ip", "link", "show", BRIDGE, check=False).returncode != 0:
        run("ip", "link", "add", BRIDGE, "type", "bridge")
    if f" {GATEWAY}/" not in run("ip", "-o", "addr", "show", "dev", BRIDGE).stdout:
        run("ip", "addr", "add", f"{GATEWAY}/{POD_CIDR.prefixlen}", "dev", BRIDGE)
    run("ip", "link", "set", BRIDGE, "up")
    # the host reaches pods from the node IP, not the bridge's: NetworkPolicy controllers
    # let a node's own traffic (the kubelet's probes) in by that address
    for cidr in (POD_CIDR, SERVICE_CIDR):
        run("ip", "route", "replace", str(cidr), "dev", BRIDGE, "scope", "link", "src", NODE_IP)


# ---------------------------------------------------------------- cleanup


def _mounts_under(root: Path) -> list[str]:
    """Mount points at or below ``root``, deepest first (from /proc/self/mountinfo)."""
    prefix = str(root)
    out = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if point == prefix or point.startswith(prefix + "/"):
            out.append(point)
    return sorted(set(out), key=lambda p: p.count("/"), reverse=True)


def unmount_all(root: Path) -> list[str]:
    problems = []
    for _ in range(3):  # a mount may hide another at the same point
        points = _mounts_under(root)
        if not points:
            return []
        for p in points:
            if run("umount", p, check=False).returncode != 0:
                r = run("umount", "-l", p, check=False)
                if r.returncode != 0:
                    problems.append(f"umount {p}: {r.stderr.strip()}")
    return problems + [f"still mounted: {p}" for p in _mounts_under(root)]


def _cgroup_dirs() -> list[Path]:
    """Our subtree in every mounted hierarchy (cgroup v1 controllers, named, unified)."""
    if not CGROUP_FS.is_dir():
        return []
    return [h / CGROUP_ROOT for h in CGROUP_FS.iterdir() if (h / CGROUP_ROOT).is_dir()]


def make_cgroup(sub: str) -> None:
    """``/<CGROUP_ROOT>/<sub>`` in every hierarchy: the kubelet refuses a cgroupRoot that
    does not exist. A new v1 cpuset starts with no CPUs or memory nodes, so each level
    gets its parent's."""
    if not CGROUP_FS.is_dir():
        return
    for h in CGROUP_FS.iterdir():
        if not h.is_dir() or not (h / "cgroup.procs").exists():
            continue
        d = h
        for part in (CGROUP_ROOT, *sub.split("/")):
            parent, d = d, d / part
            d.mkdir(exist_ok=True)
            for knob in ("cpuset.cpus", "cpuset.mems"):
                if (d / knob).exists() and not (d / knob).read_text().strip():
                    (d / knob).write_text((parent / knob).read_text())


def cgroup_pids() -> set[int]:
    pids: set[int] = set()
    for top in _cgroup_dirs():
        for procs in top.rglob("cgroup.procs"):
            with contextlib.suppress(OSError, ValueError):
                pids.update(int(x) for x in procs.read_text().split())
    return pids


def kill_cgroup_processes(timeout: float = 10) -> list[str]:
    """SIGKILL every process in our cgroups (the pods' containers) until none is left."""
    deadline = time.monotonic() + timeout
    while (pids := cgroup_pids()) and time.monotonic() < deadline:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.2)
    left = cgroup_pids()
    return [f"processes left in cgroups: {sorted(left)}"] if left else []


def remove_cgroups() -> list[str]:
    problems = []
    for top in _cgroup_dirs():
        dirs = sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts))
        for d in [*dirs, top]:
            try:
                d.rmdir()
            except FileNotFoundError:
                pass
            except OSError as e:
                problems.append(f"rmdir {d}: {e.strerror}")
    return problems


def shim_pids(root: Path) -> list[int]:
    """containerd-shim-runc-v2 processes serving a containerd of ours (they outlive it)."""
    out = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        ours = any(a.startswith(str(root).encode() + b"/") for a in argv)
        if argv and argv[0].endswith(b"containerd-shim-runc-v2") and ours:
            out.append(int(proc.name))
    return out


def remove_network() -> list[str]:
    problems = []
    for family in ("ip", "ip6"):
        r = run("nft", "delete", "table", family, "kube-proxy", check=False)
        if r.returncode != 0 and "No such file" not in r.stderr:
            problems.append(f"nft delete table {family} kube-proxy: {r.stderr.strip()}")
    problems += remove_iptables_chains()
    problems += remove_ipsets()
    remove_empty_iptables_tables()
    if run("ip", "link", "show", BRIDGE, check=False).returncode == 0:
        r = run("ip", "link", "del", BRIDGE, check=False)
        if r.returncode != 0:
            problems.append(f"ip link del {BRIDGE}: {r.stderr.strip()}")
    if f" {NODE_IP}/" in run("ip", "-o", "addr", "show", "dev", "lo").stdout:
        r = run("ip", "addr", "del", f"{NODE_IP}/32", "dev", "lo", check=False)
        if r.returncode != 0:
            problems.append(f"ip addr del {NODE_IP}: {r.stderr.strip()}")
    return problems


# chains the kubelet (canaries, KUBE-FIREWALL) and kube-router's policy controller create;
# kube-router's own --cleanup-config leaves them on an nft-backed iptables and then panics
OUR_CHAINS = (
    "KUBE-ROUTER-",
    "KUBE-NWPLCY-",
    "KUBE-POD-FW-",
    "KUBE-FIREWALL",
    "KUBE-KUBELET-CANARY",
    "KUBE-IPTABLES-HINT",
)
OUR_IPSETS = ("KUBE-SRC-", "KUBE-DST-", "inet6:KUBE-SRC-", "inet6:KUBE-DST-", "kube-router-")


def _ours(chain: str) -> bool:
    return chain.startswith(OUR_CHAINS)


def remove_iptables_chains() -> list[str]:
    """Delete the jumps into our chains, then the chains, one iptables-restore per table
    (--noflush: nobody else's rules are touched)."""
    problems = []
    for save, restore in (
        ("iptables-save", "iptables-restore"),
        ("ip6tables-save", "ip6tables-restore"),
    ):
        if shutil.which(save) is None:
            continue
        for table in ("filter", "nat", "mangle"):
            dump = run(save, "-t", table, check=False).stdout
            chains = [ln[1:].split()[0] for ln in dump.splitlines() if ln.startswith(":")]
            ours = [c for c in chains if _ours(c)]
            if not ours:
                continue
            script = [f"*{table}"]
            for ln in dump.splitlines():
                parts = ln.split()
                jumps = "-j" in parts and _ours(parts[parts.index("-j") + 1])
                if ln.startswith("-A ") and not _ours(parts[1]) and jumps:
                    script.append("-D " + ln[3:])
            script += [f"-F {c}" for c in ours] + [f"-X {c}" for c in ours] + ["COMMIT", ""]
            r = subprocess.run(
                [restore, "--noflush"], input="\n".join(script), capture_output=True, text=True
            )
            if r.returncode != 0:
                problems.append(f"{restore} -t {table}: {r.stderr.strip()[-300:]}")
    return problems


def remove_empty_iptables_tables() -> None:
    """The kubelet's canaries made iptables-nft create its tables; once they hold nothing
    (no rule, no chain but the built-in ones) they go too."""
    for family, save in (("ip", "iptables-save"), ("ip6", "ip6tables-save")):
        if shutil.which(save) is None:
            continue
        for table in ("filter", "nat", "mangle"):
            if f"table {family} {table}" not in run("nft", "list", "tables", check=False).stdout:
                continue
            dump = run(save, "-t", table, check=False).stdout.splitlines()
            rules = [ln for ln in dump if ln.startswith("-A ")]
            custom = [ln for ln in dump if ln.startswith(":") and ln.split()[1] == "-"]
            policies = {ln.split()[1] for ln in dump if ln.startswith(":")} - {"-"}
            if not rules and not custom and policies <= {"ACCEPT"}:
                run("nft", "delete", "table", family, table, check=False)


def remove_ipsets() -> list[str]:
    if shutil.which("ipset") is None:
        return []
    names = run("ipset", "list", "-n", check=False).stdout.split()
    problems = []
    for name in names:
        if name.startswith(OUR_IPSETS):
            r = run("ipset", "destroy", name, check=False)
            if r.returncode != 0:
                problems.append(f"ipset destroy {name}: {r.stderr.strip()}")
    return problems


def remove_tree(root: Path) -> list[str]:
    """rm -rf that never descends into a mount point (a bind mount of a host path must
    not have its contents deleted because cleanup ran after a failed unmount)."""
    problems = []
    if not root.exists():
        return []
    for dirpath, dirnames, filenames in os.walk(root, topdown=False):
        d = Path(dirpath)
        if os.path.ismount(d) and d != root:
            problems.append(f"left mounted, not removed: {d}")
            continue
        for f in filenames:
            with contextlib.suppress(FileNotFoundError):
                (d / f).unlink()
        for sub in dirnames:
            p = d / sub
            if p.is_symlink():
                p.unlink()
            elif not os.path.ismount(p):
                with contextlib.suppress(OSError):
                    p.rmdir()
    with contextlib.suppress(OSError):
        root.rmdir()
    return problems


def _remove_empty_runtime_dirs(root: Path = Path("/run/containerd")) -> None:
    """containerd's shims and ctr keep a few directories under /run/containerd whatever its
    state dir is (shim sockets, fifos): remove them once empty, unless a containerd of the
    host's own runs there."""
    if not root.is_dir() or (root / "containerd.sock").exists():
        return
    for d in sorted((p for p in root.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
        with contextlib.suppress(OSError):
            d.rmdir()
    with contextlib.suppress(OSError):
        root.rmdir()


def cleanup(state: State | None, binaries: Path | None) -> list[str]:
    """Stop every process of the node and remove everything it changed on the host. Safe to
    run at any point of a start, after a crash, or twice. Returns what it could not undo."""
    problems: list[str] = []
    if state is not None:
        kill_all(state.live())
    problems += kill_cgroup_processes()
    shims = shim_pids(RUN_ROOT)
    for pid in shims:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    kill_all(shims, grace=2)
    problems += unmount_all(RUN_ROOT)
    problems += remove_network()
    problems += remove_cgroups()
    problems += remove_tree(RUN_ROOT)
    _remove_empty_runtime_dirs()
    with contextlib.suppress(FileNotFoundError):
        STATE.unlink()
    return problems
