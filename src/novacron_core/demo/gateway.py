"""The demo's gateway: one ``novacron gateway`` in front of every region, and the chapter
that kills a region under load through it.

The gateway is started as the operator's Deployment starts it (``novacron gateway --config
gateway.json``, the shape ``operator/.../builders/gateway.py`` renders: this region first,
every region with its seeds and location). The story's client writes go through it
(:meth:`DemoGateway.write`, pinned to a region with ``X-Novacron-Region``).

:func:`region_killed_under_load` is the chapter: bounded writers create VMs through the
gateway from a client located at the first region; every node of that region is killed
with -9 while they run; then the region is restarted and every answer a client got is
reconciled with what the regions hold:

- acknowledged (201): the VM is held, in the region the answer named;
- 503 "not applied": the VM is nowhere;
- 502/504 "outcome unknown": allowed only for a request in flight at the kill (it may be
  held or not: the count of each is printed);
- anything else (a 500, a broken connection to the gateway, a 4xx) is a defect.
"""

from __future__ import annotations

import http.client
import json
import signal
import socket
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from novacron_core.balancing.geo import KNOWN_REGIONS, Distances, GeoPoint
from novacron_core.demo.federation import HTTP_PORT, Layout, get_json
from novacron_core.demo.procs import Supervisor, python_module_argv

if TYPE_CHECKING:
    from novacron_core.demo.story import Story

GATEWAY_PORT, GATEWAY_ADMIN_PORT = 8443, 9443
GATEWAY_HOST_OCTET = 250  # the gateway listens on 127.OCTET.250.1: no region uses .250
WRITERS = 4  # concurrent clients during the kill
WARMUP_S, AFTER_S, MAX_LOAD_S = 0.6, 0.5, 12.0  # load before the kill; after failover; cap
SPEC = {"cpus": 1, "memory_mib": 512, "image": "alpine"}


def gateway_config(layout: Layout, host: str) -> dict[str, Any]:
    """``gateway.json`` in the operator's shape (``builders/gateway.py`` ``gateway_config``):
    the first region is the gateway's own; each region is discovered from its nodes."""
    regions = []
    for r in layout.regions:
        entry: dict[str, Any] = {
            "name": r,
            "seeds": [n.http_addr for n in layout.in_region(r)],
        }
        loc = KNOWN_REGIONS.get(r)
        if loc is not None:
            entry["location"] = [loc.lat, loc.lon]
        regions.append(entry)
    return {
        "region": layout.regions[0],
        "regions": regions,
        "listen": f"{host}:{GATEWAY_PORT}",
        "admin_listen": f"{host}:{GATEWAY_ADMIN_PORT}",
        "api_port": HTTP_PORT,
        "shutdown_timeout_s": 5,
    }


@dataclass(frozen=True)
class Answer:
    status: int  # 0: no HTTP answer from the gateway at all
    body: Any
    outcome: str  # X-Novacron-Outcome, or the problem's "outcome", or ""
    backend: str


class DemoGateway:
    def __init__(self, sup: Supervisor, layout: Layout, octet: int) -> None:
        self.sup, self.layout = sup, layout
        self.host = f"127.{octet}.{GATEWAY_HOST_OCTET}.1"
        self.url = f"http://{self.host}:{GATEWAY_PORT}"
        self.admin_addr = f"{self.host}:{GATEWAY_ADMIN_PORT}"  # /metrics, /v1/backends
        self.admin = f"http://{self.admin_addr}"
        self.name = "gateway"

    def busy(self) -> str | None:
        for port in (GATEWAY_PORT, GATEWAY_ADMIN_PORT):
            with socket.socket() as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    s.bind((self.host, port))
                except OSError:
                    return f"{self.host}:{port}"
        return None

    def launch(self, base: Path) -> Path:
        """Start it (with the nodes: it keeps asking their seeds until they answer, so
        its start-up overlaps theirs); returns its config file."""
        busy = self.busy()
        if busy:
            raise RuntimeError(f"{busy} is already in use (another `novacron demo` running?)")
        cfg = base / "gateway.json"
        cfg.write_text(json.dumps(gateway_config(self.layout, self.host), indent=2))
        argv = python_module_argv("novacron_core.cli", "gateway", "--config", str(cfg))
        self.sup.start(self.name, argv)
        return cfg

    def ready(self) -> float:
        """Wait until it knows every node of every region (discovered from the seeds,
        probed healthy); returns the seconds waited."""
        want = len(self.layout.nodes)
        return self.sup.wait_until(
            f"the gateway to see all {want} nodes available",
            lambda: sum(1 for b in self.backends() if b.get("available")) == want,
            30,
        )

    def backends(self) -> list[dict[str, Any]]:
        got = get_json(self.admin + "/v1/backends")
        return list(got.get("backends", [])) if isinstance(got, dict) else []

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        conn: http.client.HTTPConnection | None = None,
        timeout: float = 10.0,
    ) -> Answer:
        """One request; status 0 when the gateway gave no answer (that is never allowed)."""
        own = conn is None
        c = conn or http.client.HTTPConnection(self.host, GATEWAY_PORT, timeout=timeout)
        data = None if body is None else json.dumps(body).encode()
        hdrs = {"Content-Type": "application/json", **(headers or {})}
        try:
            c.request(method, path, body=data, headers=hdrs)
            r = c.getresponse()
            raw = r.read()
        except (OSError, http.client.HTTPException) as e:
            c.close()
            return Answer(0, f"{type(e).__name__}: {e}", "", "")
        finally:
            if own:
                c.close()
        try:
            parsed: Any = json.loads(raw) if raw else None
        except ValueError:
            parsed = raw.decode(errors="replace")
        # the problem's "outcome" (not_applied/unknown), else the header (not-applied)
        said = parsed.get("outcome") if isinstance(parsed, dict) else None
        outcome = str(said or r.getheader("X-Novacron-Outcome") or "").replace("-", "_")
        return Answer(r.status, parsed, outcome, r.getheader("X-Novacron-Backend") or "")

    def write(
        self, region: str, method: str, path: str, body: Any, deadline_s: float = 15.0
    ) -> Any:
        """A story write through the gateway, pinned to ``region`` (a VM's writes go to its
        home region anyway). Retried while not applied (503/429); a create whose outcome
        was unknown and that then finds the VM there returns the VM."""
        deadline = time.monotonic() + deadline_s
        uncertain = False
        while True:
            a = self.call(method, path, body, {"X-Novacron-Region": region})
            if 200 <= a.status < 300:
                return a.body
            creating = method == "POST" and path == "/v1/vms"
            if a.status == 409 and uncertain and creating:
                got = self.call("GET", f"/v1/vms/{body['id']}")
                if got.status == 200:
                    return got.body
            if a.status not in (0, 429, 502, 503, 504):
                raise RuntimeError(f"{method} {path} via the gateway: {a.status} {a.body}")
            uncertain = uncertain or a.status in (0, 502, 504)
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"the gateway did not get {method} {path} applied in {region} within "
                    f"{deadline_s:.0f}s: last {a.status} {a.body}"
                )
            time.sleep(0.05)

    def held(self, region: str) -> dict[str, str] | None:
        """The VMs ``region``'s group holds (id -> home_region), read through the gateway;
        None when the region does not answer."""
        a = self.call("GET", "/v1/vms", headers={"X-Novacron-Region": region})
        if a.status != 200 or not isinstance(a.body, dict):
            return None
        return {v["id"]: v.get("home_region", "") for v in a.body.get("vms", [])}


# ---------------------------------------------------------------- the chapter


@dataclass(frozen=True)
class Op:
    vm: str
    t0: float
    t1: float
    status: int
    outcome: str
    home: str  # the acknowledged record's home_region
    backend: str = ""  # the node that answered (X-Novacron-Backend); "": the gateway did
    detail: str = ""  # an error's problem detail


class Writers:
    """Bounded clients creating VMs through the gateway from one location, until stopped."""

    def __init__(self, gw: DemoGateway, location: GeoPoint, count: int = WRITERS) -> None:
        self.gw, self.location = gw, f"{location.lat},{location.lon}"
        self.stop = threading.Event()
        self.ops: list[Op] = []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, args=(i,)) for i in range(count)]

    def __enter__(self) -> Writers:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(15)

    def _run(self, w: int) -> None:
        conn = http.client.HTTPConnection(self.gw.host, GATEWAY_PORT, timeout=10)
        i = 0
        deadline = time.monotonic() + MAX_LOAD_S + WARMUP_S + 5
        while not self.stop.is_set() and time.monotonic() < deadline:
            vm = f"load-{w}-{i}"
            i += 1
            t0 = time.monotonic()
            a = self.gw.call(
                "POST",
                "/v1/vms",
                {"id": vm, "name": vm, "spec": SPEC},
                {"X-Client-Location": self.location},
                conn,
            )
            body = a.body if isinstance(a.body, dict) else {}
            home = str(body.get("home_region", ""))
            detail = "" if a.status == 201 else str(body.get("detail", a.body))
            op = Op(vm, t0, time.monotonic(), a.status, a.outcome, home, a.backend, detail)
            with self.lock:
                self.ops.append(op)
            if a.status != 201:
                conn.close()  # a fresh connection after an error, as a client would
                conn = http.client.HTTPConnection(self.gw.host, GATEWAY_PORT, timeout=10)
                time.sleep(0.02)
        conn.close()

    def snapshot(self) -> list[Op]:
        with self.lock:
            return list(self.ops)


def nearest(regions: list[str], point: GeoPoint) -> list[str]:
    return Distances({}).rank(None, point, regions)


def region_killed_under_load(story: Story, gw: DemoGateway) -> None:
    lay, sup = story.layout, story.sup
    victim = lay.regions[0]
    point = KNOWN_REGIONS.get(victim) or GeoPoint(0.0, 0.0)
    order = nearest(list(lay.regions), point)
    after = next(r for r in order if r != victim)
    story.say(
        f"\n[bold]6. Through the gateway ({gw.url}): kill every node of {victim} under load[/bold]"
    )

    # The chapters before may have left a node ejected or its breaker open (a node was
    # killed and restarted, regions partitioned): the gateway then spills a share of the
    # nearest region's traffic to the next one by priority, as Envoy does, and "served by
    # the nearest" would not hold. Start from every backend available, and say which is not.
    def unavailable() -> list[str]:
        return [str(b["id"]) for b in gw.backends() if not b.get("available")]

    try:
        story.wait("every node available to the gateway", lambda: not unavailable(), 20)
    except TimeoutError:
        pass
    left = unavailable()
    story.expect(
        not left, "the gateway sees every node available" + (f"; not: {left}" * bool(left))
    )
    # geo routing: a client at each region's location is served by that region
    for r in lay.regions:
        loc = KNOWN_REGIONS.get(r)
        if loc is None:
            continue
        vm = f"geo-{r}"
        a = gw.call(
            "POST",
            "/v1/vms",
            {"id": vm, "name": vm, "spec": SPEC},
            {"X-Client-Location": f"{loc.lat},{loc.lon}"},
        )
        home = a.body.get("home_region") if isinstance(a.body, dict) else a.body
        ok = a.status == 201 and home == r
        got = "" if ok else f" (got {a.status}: {str(a.body)[:160]})"
        story.expect(ok, f"a client at {r}'s location is served by {r}{got}")
    story.say(
        f"   {WRITERS} clients at {victim}'s location create VMs through the gateway; "
        f"then kill -9 all {len(lay.in_region(victim))} nodes of {victim}"
    )
    killed: dict[str, float] = {}
    with Writers(gw, point) as load:
        time.sleep(WARMUP_S)
        t_kill = time.monotonic()
        # the whole region at once (a power cut): every SIGKILL sent, then reaped
        procs = [sup.procs[n.name] for n in lay.in_region(victim)]
        for n, p in zip(lay.in_region(victim), procs, strict=True):
            killed[n.host] = time.monotonic()
            if p.popen is not None and p.running:
                p.popen.send_signal(signal.SIGKILL)
        for p in procs:
            if p.popen is not None:
                p.popen.wait(timeout=10)
        t_killed = time.monotonic()

        def served_elsewhere() -> bool:
            return any(o.status == 201 and o.t0 >= t_killed for o in load.snapshot())

        try:
            story.wait(f"creates served by {after}", served_elsewhere, MAX_LOAD_S)
        except TimeoutError:
            pass  # the expectations below say what did not happen
        time.sleep(AFTER_S)
    ops = sorted(load.ops, key=lambda o: o.t0)
    before = [o for o in ops if o.t1 < t_kill]
    later = [o for o in ops if o.t0 > t_killed]
    odd = [o for o in before if o.status != 201 or o.home != victim]
    story.expect(
        bool(before) and not odd,
        f"before the kill, the {len(before)} creates were served by {victim} (nearest)"
        + (f"; not: {', '.join(f'{o.status} {o.home}' for o in odd[:5])}" if odd else ""),
    )
    ok_later = [o for o in later if o.status == 201]
    served = [o.t1 for o in ops if o.status == 201 and o.home != victim and o.t0 >= t_kill]
    story.expect(
        bool(ok_later) and all(o.home == after for o in ok_later),
        f"after the kill, creates are served by {after} (the nearest healthy region): "
        f"{len(ok_later)} of {len(later)}",
    )
    if served:
        story.figures["gateway_failover_ms"] = 1000 * (min(served) - t_kill)
    last = [
        b["last_sent_monotonic"] - killed[b["address"].rsplit(":", 1)[0]]
        for b in gw.backends()
        if b["region"] == victim and b.get("last_sent_monotonic") is not None
    ]
    if last:
        story.figures["gateway_last_sent_ms"] = 1000 * max(last)
    verdicts = judge(ops, t_kill, t_killed)
    counts = {k: len(v) for k, v in verdicts.items()}
    story.say(
        f"   {len(ops)} creates: {counts['acked']} acknowledged, {counts['unknown']} answered "
        f"502/504 outcome unknown (in flight while the region died: SIGKILL to the last process "
        f"reaped took {1000 * (t_killed - t_kill):.0f} ms), {counts['not_applied']} answered "
        f"503 not applied, {counts['dishonest']} other"
        + (
            f"; {counts['node_unknown']} answered 'outcome unknown' by a surviving node itself "
            f"({verdicts['node_unknown'][0].backend}: {verdicts['node_unknown'][0].detail[:60]})"
            if verdicts["node_unknown"]
            else ""
        )
    )
    if served:
        story.say(
            f"   {victim} killed → first create served by {after}: "
            f"{story.figures['gateway_failover_ms']:.0f} ms; last request the gateway sent "
            f"a dead node: {story.figures.get('gateway_last_sent_ms', float('nan')):.0f} ms "
            "after its kill"
        )
    bad = verdicts["dishonest"][:3]
    story.expect(
        not verdicts["dishonest"],
        "every error a client saw was honest (502/504 unknown only in flight at the kill, "
        "503 not applied otherwise)"
        + (
            f": {[(o.vm, o.status, o.outcome, o.backend or 'gateway', o.detail) for o in bad]}"
            if verdicts["dishonest"]
            else ""
        ),
    )
    restart_and_reconcile(story, gw, victim, verdicts)


def judge(ops: list[Op], t_kill: float, t_killed: float) -> dict[str, list[Op]]:
    """Sort the answers: acknowledged; unknown (502/504 "unknown", in flight at the kill);
    node_unknown (a surviving node's own 502/504 "unknown", passed through: its group
    changed leader under the write, and it says so); not applied (503 "not_applied");
    anything else is dishonest (the gateway's own "unknown" for a request sent after the
    kill, a 500, no answer, a 4xx)."""
    out: dict[str, list[Op]] = {
        "acked": [],
        "unknown": [],
        "node_unknown": [],
        "not_applied": [],
        "dishonest": [],
    }
    for o in ops:
        unknown = o.status in (502, 504) and o.outcome == "unknown"
        if o.status == 201 and o.home:
            out["acked"].append(o)
        elif unknown and o.t0 <= t_killed and o.t1 >= t_kill:
            out["unknown"].append(o)
        elif unknown and o.backend:
            out["node_unknown"].append(o)
        elif o.status == 503 and o.outcome == "not_applied":
            out["not_applied"].append(o)
        else:
            out["dishonest"].append(o)
    return out


@dataclass(frozen=True)
class Reconciled:
    lost: list[str]  # acknowledged, not held in the region their answer named
    phantom: list[str]  # answered "not applied", yet some region holds them
    twice: list[str]  # held as their own by more than one region (applied twice)
    unknown_held: int  # answered "outcome unknown" and held


def reconcile(
    verdicts: Mapping[str, list[Op]], held: Mapping[str, Mapping[str, str]]
) -> Reconciled:
    """Every answer against what the regions hold (``held``: region -> {vm: home})."""
    where: dict[str, set[str]] = {}
    for region, vms in held.items():
        for vm, home in vms.items():
            if home == region:
                where.setdefault(vm, set()).add(region)
    lost = [o.vm for o in verdicts["acked"] if o.home not in where.get(o.vm, set())]
    phantom = [o.vm for o in verdicts["not_applied"] if o.vm in where]
    unknown_held = sum(1 for k in ("unknown", "node_unknown") for o in verdicts[k] if o.vm in where)
    twice = sorted(vm for vm, regions in where.items() if len(regions) > 1)
    return Reconciled(lost, phantom, twice, unknown_held)


def restart_and_reconcile(
    story: Story, gw: DemoGateway, victim: str, verdicts: Mapping[str, list[Op]]
) -> None:
    t0 = time.monotonic()
    for n in story.layout.in_region(victim):
        story.sup.restart(n.name)
    story.wait(f"a leader in {victim} again", lambda: story.leader_of(victim) is not None, 30)
    t_leader = time.monotonic() - t0
    story.wait(
        f"the gateway to see {victim} again",
        lambda: any(b["region"] == victim and b.get("available") for b in gw.backends()),
        30,
    )
    story.say(
        f"   restarted {victim}: a leader after {t_leader:.1f}s, back behind the gateway "
        f"after {time.monotonic() - t0:.1f}s"
    )
    held: dict[str, dict[str, str]] = {}
    deadline = time.monotonic() + 10  # a restarted follower may still be applying its log
    while True:
        for r in story.layout.regions:
            got = gw.held(r)
            if got is not None:
                held[r] = got
        rec = reconcile(verdicts, held)
        if (not rec.lost and len(held) == len(story.layout.regions)) or (
            time.monotonic() > deadline
        ):
            break
        time.sleep(0.2)
    lost, phantom, unknown_held = rec.lost, rec.phantom, rec.unknown_held
    story.expect(
        not lost and len(held) == len(story.layout.regions),
        f"all {len(verdicts['acked'])} acknowledged creates are held, each in the region "
        f"its answer named" + (f" (missing: {lost[:5]})" if lost else ""),
    )
    story.expect(
        not phantom,
        f"none of the {len(verdicts['not_applied'])} creates answered 'not applied' was applied"
        + (f" (found: {phantom[:5]})" if phantom else ""),
    )
    story.expect(
        not rec.twice,
        "no create was applied twice (no VM homed in two regions)"
        + (f" (found: {rec.twice[:5]})" if rec.twice else ""),
    )
    unknown = len(verdicts["unknown"]) + len(verdicts["node_unknown"])
    if unknown:
        story.say(
            f"   of the {unknown} 'outcome unknown' creates, {unknown_held} "
            "had been applied (the client must read back; the gateway never re-sent them)"
        )
