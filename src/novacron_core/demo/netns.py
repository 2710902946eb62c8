"""Network namespaces for ``novacron demo --network netns`` (root only).

One namespace per region, joined by a veth pair each to a bridge in the root namespace. Each
region is its own /24 inside a /20 picked from 198.18.0.0/15 (RFC 2544 benchmarking space)
that no route or address of this machine overlaps; the bridge holds ``.15.1`` of the /20, so
the demo (root namespace) reaches every node directly, and no forwarding is switched on.

On each region's egress (``eth0`` in its namespace) an ``htb`` qdisc classifies by destination
subnet (``u32``): one class per other region, whose leaf is ``netem delay RTT/2`` when the
kernel has ``sch_netem`` (else a plain FIFO, and the nodes delay federation messages instead);
unclassified traffic (ARP, the demo's own requests) takes the default class, undelayed.
Partitions happen in the middle, on the bridge: each bridge port (the root-namespace end of a
region's veth) has an ``htb`` too, and a partition adds ``u32`` filters sending every packet
from a region across the cut to a class whose leaf is ``pfifo limit 0`` (it drops everything);
healing deletes them. A drop there is invisible to the sender's TCP, which retransmits and
backs off as across a real WAN (dropped by its own qdisc, TCP would simply hold the data).

Every name starts with ``ncd<pid of the demo>``. A watchdog process (own session, started with
the network) tears it down when the demo's end of its pipe closes, i.e. when the demo exits or
is killed with -9; the next demo also sweeps every prefix whose owner is gone.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from novacron_core.demo.netplan import DEV, NetPlan

SPACE = ipaddress.IPv4Network("198.18.0.0/15")
BLOCK_PREFIX = 20  # one block per run: 16 /24s, one per region (<= 9) + the bridge's
PREFIX_RE = re.compile(r"^ncd(\d+)(?=[-a-z])")


def run_prefix(pid: int | None = None) -> str:
    return f"ncd{os.getpid() if pid is None else pid}"


class NetnsError(RuntimeError):
    pass


def _run(argv: Sequence[str], stdin: str | None = None, check: bool = True) -> str:
    p = subprocess.run(list(argv), input=stdin, capture_output=True, text=True, timeout=30)
    if check and p.returncode != 0:
        raise NetnsError(f"`{' '.join(argv)}` failed: {(p.stderr or p.stdout).strip()}")
    return p.stdout


# ---------------------------------------------------------------- probing


@dataclass(frozen=True)
class Probe:
    ok: bool  # namespaces, veth, htb and u32 work: netns mode is possible
    netem: bool  # tc netem works too: the kernel delays
    why: str  # why not (or what is missing), for the demo to say
    tun: bool = False  # TUN devices work in a namespace: a userspace WAN can delay instead

    @property
    def delay(self) -> str:
        """Who delays packets between regions in netns mode: netem, wan or transport."""
        return "netem" if self.netem else "wan" if self.tun else "transport"


def probe() -> Probe:
    """Try it: a scratch namespace with a veth pair, an htb + u32 classifier, a netem leaf."""
    if os.geteuid() != 0:
        return Probe(False, False, "not root")
    for tool in ("ip", "tc"):
        if not _which(tool):
            return Probe(False, False, f"no `{tool}` command")
    ns = f"{run_prefix()}-probe"
    try:
        _run(["ip", "netns", "add", ns])
    except (NetnsError, OSError) as e:
        return Probe(False, False, f"`ip netns add` failed: {e}")
    try:
        try:
            _run(["ip", "-n", ns, "link", "add", "name", "a", "type", "veth", "peer", "name", "b"])
            _run(
                ["tc", "-n", ns, "-batch", "-"],
                stdin="\n".join(
                    [
                        "qdisc add dev a root handle 1: htb default 1 r2q 100000",
                        "class add dev a parent 1: classid 1:1 htb rate 10gbit",
                        "class add dev a parent 1: classid 1:2 htb rate 10gbit",
                        "qdisc add dev a parent 1:2 pfifo limit 0",
                        "filter add dev a parent 1: protocol ip pref 1 u32 "
                        "match ip dst 198.18.0.0/24 flowid 1:2",
                    ]
                )
                + "\n",
            )
        except (NetnsError, OSError) as e:
            return Probe(False, False, f"tc htb/u32 in a namespace failed: {e}")
        try:
            _run(
                [
                    "tc",
                    "-n",
                    ns,
                    "qdisc",
                    "add",
                    "dev",
                    "a",
                    "parent",
                    "1:1",
                    "netem",
                    "delay",
                    "1ms",
                ]
            )
        except NetnsError as e:
            detail = str(e).split("failed: ", 1)[-1].splitlines()[0]
            detail = detail.removeprefix("Error: ").rstrip(".")
            why = f"this kernel has no tc netem: {detail}"
            try:
                _run(["ip", "-n", ns, "tuntap", "add", "dev", "t", "mode", "tun"])
            except (NetnsError, OSError) as e:
                return Probe(True, False, f"{why}; no TUN device either: {e}")
            return Probe(True, False, why, tun=True)
        return Probe(True, True, "")
    finally:
        _run(["ip", "netns", "del", ns], check=False)


def _which(tool: str) -> bool:
    from shutil import which

    return which(tool) is not None


# ---------------------------------------------------------------- the network


class RegionNetwork:
    """Creates the plan's namespaces, bridge and qdiscs; :meth:`close` removes them (also done
    by the watchdog if this process dies first).

    ``delay``: ``netem`` (the kernel delays, per destination, on each region's egress), ``wan``
    (every other region's /24 is routed through a TUN device that ``demo.wan`` serves: it
    delays and drops in userspace, for kernels without netem), or ``transport`` (the network
    does not delay; the nodes do, with their demo link rules)."""

    def __init__(
        self,
        regions: Sequence[str],
        rtt_ms: Mapping[tuple[str, str], float],
        delay: str,
        nodes_per_region: int,
        prefix: str | None = None,
    ) -> None:
        assert delay in ("netem", "wan", "transport"), delay
        self.prefix = prefix or run_prefix()
        self.nodes_per_region = nodes_per_region
        self.regions = tuple(regions)
        self.rtt_ms, self.delay = dict(rtt_ms), delay
        self.plan: NetPlan | None = None
        self.watchdog: subprocess.Popen[bytes] | None = None
        self.wan: subprocess.Popen[str] | None = None
        self.swept: list[str] = []

    @property
    def netem(self) -> bool:
        return self.delay == "netem"

    @property
    def delays(self) -> bool:
        """Whether the network itself delays (netem or the userspace WAN)."""
        return self.delay != "transport"

    def __enter__(self) -> RegionNetwork:
        try:
            self.setup()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def setup(self) -> NetPlan:
        self.swept = sweep()
        # the watchdog first: from here on, whatever exists is removed even if we are killed
        self.watchdog = subprocess.Popen(
            [sys.executable, "-m", __name__, "watchdog", self.prefix],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        _run(["ip", "link", "add", f"{self.prefix}br", "type", "bridge"])
        block = self._claim_block(f"{self.prefix}br")
        plan = self.plan = NetPlan(
            self.prefix, self.regions, block, self.rtt_ms, netem=self.delay == "netem"
        )
        _run(["ip", "link", "set", plan.bridge, "up"])
        for i in range(len(self.regions)):
            ns = plan.ns(i)
            _run(["ip", "netns", "add", ns])
            tmp = f"{self.prefix}n{i}"
            _run(["ip", "link", "add", plan.host_if(i), "type", "veth", "peer", "name", tmp])
            _run(["ip", "link", "set", tmp, "netns", ns])
            _run(["ip", "link", "set", plan.host_if(i), "master", plan.bridge, "up"])
            _run(["ip", "-n", ns, "link", "set", tmp, "name", DEV])
            batch = ["link set lo up", f"link set {DEV} up"]
            batch += [
                f"addr add {plan.node_addr(i, j)}/24 dev {DEV}"
                for j in range(self.nodes_per_region)
            ]
            batch.append(f"route add {plan.block} dev {DEV}")
            _run(["ip", "-n", ns, "-batch", "-"], stdin="\n".join(batch) + "\n")
            _run(["tc", "-n", ns, "-batch", "-"], stdin="\n".join(plan.egress(i)) + "\n")
            _run(["tc", "-batch", "-"], stdin="\n".join(plan.bridge_port(i)) + "\n")
        if self.delay == "wan":
            self._start_wan(plan)
        return plan

    def _claim_block(self, bridge: str) -> ipaddress.IPv4Network:
        """The first /20 of 198.18.0.0/15 (from a pid-dependent start) that overlaps no route
        or address here, given to our bridge; re-checked after, in case another demo raced."""
        blocks = list(SPACE.subnets(new_prefix=BLOCK_PREFIX))
        start = os.getpid() % len(blocks)
        for block in blocks[start:] + blocks[:start]:
            if any(block.overlaps(n) for _, n in _used_networks()):
                continue
            gw = ipaddress.IPv4Address(int(block.network_address) + 15 * 256 + 1)
            _run(["ip", "addr", "add", f"{gw}/{BLOCK_PREFIX}", "dev", bridge])
            if all(dev == bridge for dev, n in _used_networks() if block.overlaps(n)):
                return block
            _run(["ip", "addr", "del", f"{gw}/{BLOCK_PREFIX}", "dev", bridge], check=False)
        raise NetnsError(f"no free /{BLOCK_PREFIX} left in {SPACE} (every one overlaps a route)")

    def _start_wan(self, plan: NetPlan) -> None:
        n = len(self.regions)
        self.wan = subprocess.Popen(
            [sys.executable, "-m", "novacron_core.demo.wan", str(plan.block)]
            + [plan.ns(i) for i in range(n)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # Ctrl-C is ours; EOF on its stdin (we exited) ends it
        )
        self._wan_say(None, "ready")
        for i in range(n):
            batch = ["link set wan up"]
            batch += [f"route add {plan.subnet(k)} dev wan" for k in range(n) if k != i]
            _run(["ip", "-n", plan.ns(i), "-batch", "-"], stdin="\n".join(batch) + "\n")
            for k in range(n):
                if k != i:
                    self._wan_say(f"delay {i} {k} {plan.one_way_ms(i, k):g}", "ok")

    def _wan_say(self, line: str | None, expect: str) -> str:
        """Send the WAN process a command (None: just read) and return its answer."""
        wan = self.wan
        assert wan is not None
        assert wan.stdin is not None
        assert wan.stdout is not None
        if line is not None:
            wan.stdin.write(line + "\n")
            wan.stdin.flush()
        reply = wan.stdout.readline().strip()
        if not reply.startswith(expect):
            err = wan.stderr.read() if wan.poll() is not None and wan.stderr else ""
            raise NetnsError(f"the userspace WAN answered {reply!r} to {line!r}: {err.strip()}")
        return reply

    def check(self) -> None:
        """Raise if the userspace WAN died (every packet between regions would be lost)."""
        if self.wan is not None and self.wan.poll() is not None:
            err = self.wan.stderr.read() if self.wan.stderr else ""
            raise NetnsError(f"the userspace WAN exited ({self.wan.returncode}): {err.strip()}")

    def wan_stats(self) -> str:
        return self._wan_say("stats", "forwarded") if self.wan is not None else ""

    def set_partitioned(self, cut: Iterable[str]) -> None:
        assert self.plan is not None
        cut = list(cut)
        if self.wan is not None:  # the WAN drops: every packet between regions crosses it
            idx = ",".join(str(self.regions.index(r)) for r in cut)
            self._wan_say(f"cut {idx}".strip(), "ok")
            return
        lines = [line for i in range(len(self.regions)) for line in self.plan.partition(i, cut)]
        # `-force`: go on after the deletes of filters that do not exist (yet)
        _run(["tc", "-force", "-batch", "-"], stdin="\n".join(lines) + "\n", check=False)

    def cut_link(self, a: str, b: str, cut: bool = True) -> None:
        """Cut (or restore) the one link between regions ``a`` and ``b``, both directions,
        leaving every other link up: a blackhole route in each of the two namespaces for
        every address of the other (a /32 beats the /24 or /20 the WAN routes by). Sends
        across it fail at once; whatever listens sees silence, as across a dead link."""
        assert self.plan is not None
        plan, verb = self.plan, "add" if cut else "del"
        i, k = self.regions.index(a), self.regions.index(b)
        for me, other in ((i, k), (k, i)):
            lines = [
                f"route {verb} blackhole {plan.node_addr(other, j)}/32"
                for j in range(self.nodes_per_region)
            ]
            _run(["ip", "-n", plan.ns(me), "-batch", "-"], stdin="\n".join(lines) + "\n")

    def exec_argv(self, region: str, argv: Sequence[str]) -> list[str]:
        assert self.plan is not None
        return ["ip", "netns", "exec", self.plan.ns(self.regions.index(region)), *argv]

    def close(self) -> None:
        if self.wan is not None:
            for pipe in (self.wan.stdin, self.wan.stdout, self.wan.stderr):
                if pipe is not None:
                    pipe.close()  # EOF: it closes its TUN devices and exits
            try:
                self.wan.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.wan.kill()
                self.wan.wait()
            self.wan = None
        teardown(self.prefix)
        if self.watchdog is not None:
            if self.watchdog.stdin is not None:
                self.watchdog.stdin.close()  # EOF: it tears down (nothing left) and exits
            try:
                self.watchdog.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.watchdog.kill()
                self.watchdog.wait()
            self.watchdog = None


def _used_networks() -> list[tuple[str, ipaddress.IPv4Network]]:
    """(device, network) of every IPv4 route (any table) and address on this machine, except
    default routes."""
    out: list[tuple[str, ipaddress.IPv4Network]] = []
    for r in json.loads(_run(["ip", "-j", "-4", "route", "show", "table", "all"]) or "[]"):
        dst = r.get("dst", "")
        if dst and dst != "default":
            try:
                out.append((r.get("dev", ""), ipaddress.IPv4Network(dst, strict=False)))
            except ValueError:
                continue
    for link in json.loads(_run(["ip", "-j", "-4", "addr", "show"]) or "[]"):
        for a in link.get("addr_info", []):
            net = ipaddress.IPv4Network(f"{a['local']}/{a['prefixlen']}", strict=False)
            out.append((link.get("ifname", ""), net))
    return out


# ---------------------------------------------------------------- cleanup


def owner(name: str) -> int | None:
    """The pid in a name of ours (``ncd<pid>-…``, ``ncd<pid>br``...), else None."""
    m = PREFIX_RE.match(name)
    return int(m.group(1)) if m else None


def names_with(prefix: str | None = None) -> tuple[list[str], list[str]]:
    """(namespaces, links in the root namespace) of the run ``prefix`` (``ncd<pid>``), or of
    every run when None."""
    pid = None if prefix is None else owner(prefix + "-")

    def ours(name: str) -> bool:
        o = owner(name)
        return o is not None and (pid is None or o == pid)

    spaces = [
        line.split()[0]
        for line in _run(["ip", "netns", "list"], check=False).splitlines()
        if line.strip() and ours(line.split()[0])
    ]
    links = [
        str(link["ifname"])
        for link in json.loads(_run(["ip", "-j", "link", "show"], check=False) or "[]")
        if ours(str(link.get("ifname", "")))
    ]
    return spaces, links


def teardown(prefix: str, grace_s: float = 3.0) -> None:
    """Remove every namespace and link named ``prefix…``; processes still inside those
    namespaces get SIGTERM, then SIGKILL after ``grace_s``. Idempotent."""
    spaces, links = names_with(prefix)
    pids = {
        int(p)
        for ns in spaces
        for p in _run(["ip", "netns", "pids", ns], check=False).split()
        if p.isdigit()
    }
    _signal_all(pids, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while pids and time.monotonic() < deadline:
        pids = {p for p in pids if _alive(p)}
        time.sleep(0.05)
    _signal_all(pids, signal.SIGKILL)
    for link in sorted(links, key=lambda n: n.endswith("br")):  # veths first, then the bridge
        _run(["ip", "link", "del", link], check=False)
    for ns in spaces:
        _run(["ip", "netns", "del", ns], check=False)


def _signal_all(pids: Iterable[int], sig: int) -> None:
    for p in pids:
        try:
            os.kill(p, sig)
        except ProcessLookupError:
            pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return False


def sweep() -> list[str]:
    """Tear down the networks of earlier demos that are gone (killed with -9 before their
    watchdog could run, or the watchdog was killed too). Returns their prefixes."""
    spaces, links = names_with()
    owners = {o for o in map(owner, spaces + links) if o is not None}
    gone = sorted(run_prefix(pid) for pid in owners if pid != os.getpid() and not _alive(pid))
    for prefix in gone:
        teardown(prefix)
    return gone


def _watchdog(prefix: str) -> None:
    """Wait for EOF on stdin (the demo exited, however), then remove the network."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # only the pipe ends this
    while sys.stdin.buffer.read(4096):
        pass
    teardown(prefix)


# ---------------------------------------------------------------- measuring

_CONNECT_RTT = """
import socket, sys, time
count = int(sys.argv[1])
for target in sys.argv[2:]:
    host, port = target.rsplit(":", 1)
    samples = []
    for _ in range(count):
        t = time.perf_counter()
        with socket.create_connection((host, int(port)), timeout=5):
            samples.append(1000 * (time.perf_counter() - t))
    print(target, *samples)
"""


def connect_rtt_samples(
    exec_prefix: Sequence[str], targets: Sequence[str], count: int = 5
) -> dict[str, list[float]]:
    """``count`` TCP connect times (ms; each one SYN/SYN-ACK round trip) from inside a
    namespace to each ``host:port``."""
    out = _run([*exec_prefix, sys.executable, "-c", _CONNECT_RTT, str(count), *targets])
    rows = (line.split() for line in out.splitlines() if line)
    return {row[0]: [float(x) for x in row[1:]] for row in rows}


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "watchdog":
        _watchdog(sys.argv[2])
    else:
        sys.exit("usage: python -m novacron_core.demo.netns watchdog PREFIX")
