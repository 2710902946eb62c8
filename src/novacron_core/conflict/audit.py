"""The audit trail: an append-only log of every conflict a replica detected and how it was
resolved (sans-IO: events leave as ``Ready.writes``; a Durable keeps them).

Events (one JSON object each): ``detected`` (a conflict appeared: the entry), ``updated``
(its decision changed: a changed policy, another closer), ``closed`` (a write resolved it on
top of the merged record: automatically by policy, or by a manual resolve or a rollback),
``superseded`` (a later concurrent write replaced it before anyone wrote on top: a new
entry covers its values). Each carries the entry as it was then and the replica's wall
clock (``at``, ms).

The log's *state* is the latest entry per id. Entries other than superseded ones are a
function of the copies a replica holds (``resolve.py``), so replicas holding the same copies
hold the same entries: the property suite and the simulation check that.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Protocol

AUDIT = "a"  # the write tag of an audit event
SUPERSEDED = "superseded"


class AuditDurable(Protocol):
    """Where audit events go (the simulator's list, the runtime's file)."""

    @property
    def events(self) -> list[dict[str, Any]]: ...

    def apply(self, writes: list[Any]) -> None: ...


class MemoryAudit:
    """What survives a crash in the simulator (it applies only synced writes)."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def apply(self, writes: list[Any]) -> None:
        for kind, body in writes:
            if kind == AUDIT and isinstance(body, dict):
                self.events.append(body)


class AuditLog:
    def __init__(self, durable: AuditDurable | None = None) -> None:
        self.events: list[dict[str, Any]] = []
        self.state: dict[str, dict[str, Any]] = {}  # entry key -> latest entry
        self.order: list[str] = []  # keys in first-seen order
        if durable is not None:
            for ev in durable.events:
                self._fold(ev)

    def _fold(self, ev: Mapping[str, Any]) -> None:
        key, entry = ev.get("key"), ev.get("entry")
        if not isinstance(key, str) or not isinstance(entry, dict):
            return
        self.events.append(dict(ev))
        if key not in self.state:
            self.order.append(key)
        self.state[key] = entry

    def record(self, event: str, key: str, entry: dict[str, Any], at_ms: int) -> dict[str, Any]:
        ev = {
            "event": event,
            "key": key,
            "id": entry.get("id"),
            "vm": entry.get("vm"),
            "at": at_ms,
            "entry": entry,
        }
        self._fold(ev)
        return ev

    def live(self) -> dict[str, dict[str, Any]]:
        """Every entry but the superseded ones: what replicas agree on."""
        return {k: e for k, e in self.state.items() if e.get("status") != SUPERSEDED}

    def query(
        self,
        vm: str | None = None,
        since_ms: int | None = None,
        until_ms: int | None = None,
        status: str | None = None,
        include_superseded: bool = False,
        limit: int = 1000,
    ) -> list[dict[str, Any]]:
        """Entries, newest first (by the conflict's time: its newest head's HLC wall ms)."""
        out = []
        for key in self.order:
            e = self.state[key]
            if e.get("status") == SUPERSEDED and not include_superseded and status != SUPERSEDED:
                continue
            if vm is not None and e.get("vm") != vm and vm not in e.get("vms", ()):
                continue
            at = int(e.get("at_ms", 0))
            if since_ms is not None and at < since_ms:
                continue
            if until_ms is not None and at > until_ms:
                continue
            if status is not None and e.get("status") != status:
                continue
            out.append({**e, "key": key})
        out.sort(key=lambda e: (-int(e.get("at_ms", 0)), e["key"]))
        return out[:limit]

    def get(self, ident: str) -> dict[str, Any] | None:
        """An entry by key, or by conflict id (the newest state of that id)."""
        if ident in self.state:
            return {**self.state[ident], "key": ident}
        found = [k for k in self.order if self.state[k].get("id") == ident]
        if not found:
            return None
        k = found[-1]
        return {**self.state[k], "key": k}

    def history(self, ident: str) -> list[dict[str, Any]]:
        return [
            {k: v for k, v in ev.items() if k != "entry"} | {"status": ev["entry"].get("status")}
            for ev in self.events
            if ev.get("key") == ident or ev.get("id") == ident
        ]


def keyed(entries: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Entries by conflict id. An id both open and closed (a write claimed it while the
    conflict is still there) is shown open: what is, not what was claimed."""
    out: dict[str, dict[str, Any]] = {}
    for e in entries:
        have = out.get(e["id"])
        if have is None or (have.get("closed_by") and not e.get("closed_by")):
            out[e["id"]] = e
    return out
