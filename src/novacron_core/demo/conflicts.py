"""The demo's conflict chapter (issue 20): two regions partitioned, both sides power-cycle
and re-address the same VM, the partition heals, and every node of every region must show
the same merged record and the same audit entry, which the chapter prints (what was
decided, by which strategy, and what was overwritten) and lists with `novacron conflicts`.

The VM carries the label ``novacron.io/writes: multi`` (the demo's federation keeps
``writes: home``), so both sides accept writes while cut off from each other.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from rich.markup import escape

from novacron_core.conflict.record import WRITES_LABEL
from novacron_core.demo.federation import NodeSpec, fed_record, get_json, write

if TYPE_CHECKING:
    from novacron_core.demo.story import Story

VM = "contested"
SPEC = {"cpus": 2, "memory_mib": 2048, "image": "debian-12"}


def same(values: Sequence[Any]) -> bool:
    """Every value equal (compared as canonical JSON) and there is at least one."""
    texts = {json.dumps(v, sort_keys=True) for v in values}
    return len(values) > 0 and len(texts) == 1 and None not in values


def address(record: Mapping[str, Any] | None, nic: str = "eth0") -> Any:
    """The NIC's address: ip, pool and lease (both sides may get the same ip from the
    VM's pool; the leases tell them apart)."""
    for n in (record or {}).get("nics") or []:
        if isinstance(n, Mapping) and n.get("name") == nic:
            return n.get("address")
    return None


def lost_values(entry: Mapping[str, Any], path: str) -> list[Any]:
    """The values the entry records as overwritten at ``path``."""
    for f in entry.get("fields") or []:
        if f.get("path") == path:
            return [o.get("value") for o in f.get("overwritten") or []]
    return []


def resolution_lines(entry: Mapping[str, Any]) -> list[str]:
    """The entry as the chapter prints it: the writes, then per contested field the
    strategy, the value kept and the values overwritten, and what merged without contest."""
    heads = ", ".join(f"{h.get('dot')} ({h.get('region')})" for h in entry.get("heads") or [])
    lines = [
        f"conflict {entry.get('id')}: {', '.join(entry.get('kinds') or [])}; "
        f"concurrent writes {heads}; status {entry.get('status')}"
    ]
    for f in entry.get("fields") or []:
        lost = "; ".join(
            f"{_short(o.get('value'))} from {o.get('from')}" for o in f.get("overwritten") or []
        )
        lines.append(
            f"{f.get('path')}: {f.get('strategy')} kept {_short(f.get('value'))}"
            + (f" from {f.get('from')}" if f.get("from") else "")
            + (f", overwrote {lost}" if lost else "")
            + (f" ({f.get('why')})" if f.get("why") else "")
        )
    for path, dots in sorted((entry.get("merged") or {}).items()):
        lines.append(f"{path}: merged without contest from {', '.join(dots)}")
    return lines


def _short(v: Any) -> str:
    if isinstance(v, Mapping) and "ip" in v:
        lease = v.get("lease")
        if isinstance(lease, list) and len(lease) == 3:
            return f"{v['ip']} (leased by {lease[2]} at HLC {lease[0]}.{lease[1]})"
        return str(v["ip"])
    text = json.dumps(v, sort_keys=True)
    return text if len(text) <= 60 else text[:57] + "..."


def _entries(n: NodeSpec) -> list[dict[str, Any]] | None:
    body = get_json(f"{n.url}/v1/conflicts?vm={VM}")  # superseded ones are per replica
    got = (body or {}).get("conflicts") if isinstance(body, dict) else None
    return got if isinstance(got, list) else None


def chapter(story: Story) -> None:
    lay = story.layout
    cut, home = lay.regions[-1], lay.regions[0]
    story.say(
        f"\n[bold]Conflicts: partition {cut} from {home} again; both power-cycle and "
        f"re-address VM {VM}, then heal[/bold]"
    )
    t_start = time.monotonic()
    vm = {"id": VM, "name": VM, "spec": SPEC, "labels": {WRITES_LABEL: "multi"}}
    write(story.live(home), "POST", "/v1/vms", vm)
    write(story.live(home), "POST", f"/v1/vms/{VM}/power", {"state": "on"})
    everyone = [n for r in lay.regions for n in story.live(r)]
    story.wait(
        f"{VM} running on every node",
        lambda: all((fed_record(n, VM) or {}).get("lifecycle") == "running" for n in everyone),
        30,
    )
    story.say(f"   {VM} created in {home} with label {WRITES_LABEL}=multi: any region writes it")
    story.set_partitioned([cut])
    addrs: dict[str, Any] = {}
    for region in (home, cut):  # home first: its new lease is the earlier one
        nodes = story.live(region)
        write(nodes, "POST", f"/v1/vms/{VM}/power", {"state": "off"})
        write(nodes, "POST", f"/v1/vms/{VM}/power", {"state": "on"})
        addrs[region] = address(write(nodes, "POST", f"/v1/vms/{VM}/readdress", {}))
        story.say(f"   {region}: power off, power on, re-addressed to {_short(addrs[region])}")
    t_heal = time.monotonic()
    story.set_partitioned([])

    def converged() -> bool:
        views = [fed_record(n, VM) for n in everyone]
        if not same(views) or not (views[0] or {}).get("conflict"):
            return False
        return same([_entries(n) for n in everyone])

    story.wait("every node to show one merged record and one audit", converged, 30)
    took = time.monotonic() - t_heal
    story.figures["conflict_heal_ms"] = 1000 * took
    record = fed_record(everyone[0], VM) or {}
    entries = _entries(everyone[0]) or []
    entry = next((e for e in entries if e.get("id") == record.get("conflict")), {})
    story.say(
        f"   healed: every one of {len(everyone)} nodes shows the same record and audit "
        f"{1000 * took:.0f} ms later. The resolution:"
    )
    for line in resolution_lines(entry):
        story.say(f"     {escape(line)}")
    story.expect(
        same([fed_record(n, VM) for n in everyone]),
        f"every region shows the same record of {VM} (version {record.get('version')})",
    )
    story.expect(
        bool(entry) and same([_entries(n) for n in everyone]),
        f"every region lists the same audit entry {entry.get('id')}",
    )
    story.expect(
        record.get("lifecycle") == "running" and address(record) == addrs[home],
        f"both power-cycles end running; {home}'s earlier lease keeps the address",
    )
    story.expect(
        addrs[cut] != addrs[home] and addrs[cut] in lost_values(entry, "nics.eth0.address"),
        f"{cut}'s address (its lease) is in the audit entry as overwritten, not silently lost",
    )
    url = story.fed_node(cut).url
    listed = subprocess.run(
        [sys.executable, "-m", "novacron_core.cli", "conflicts", "list", "--vm", VM, "--url", url],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "COLUMNS": "150"},
    )
    story.say(f"   $ novacron conflicts list --vm {VM} --url {url}")
    for line in (listed.stdout or listed.stderr).rstrip().splitlines():
        story.say(f"     {escape(line)}")
    story.expect(
        listed.returncode == 0 and str(entry.get("id")) in listed.stdout,
        f"`novacron conflicts list` in {cut} shows it",
    )
    story.figures["conflict_chapter_s"] = took_all = time.monotonic() - t_start
    story.say(f"   (this chapter took {took_all:.1f} s)")
