"""The eventual protocol's durable state: the sync engine's snapshot and journal
(``sync/persist.py``), kept by the simulator in memory and by the runtime's file log."""

from __future__ import annotations

from typing import Any

from novacron_core.consensus.eventual.messages import Journal, JournalUpdate
from novacron_core.sync.persist import MemoryDurable


class EventualDurable(MemoryDurable):
    """Takes :class:`Journal` records (what the member writes) as well as plain entries."""

    def apply(self, writes: list[Any]) -> None:
        super().apply([w.entry() if isinstance(w, Journal | JournalUpdate) else w for w in writes])

    def load(self) -> EventualDurable:
        out = EventualDurable()
        out.snapshot, out.journal = self.snapshot, list(self.journal)
        return out


class EventualLogFormat:
    """The interface's ``LogFormat`` for the runtime's file log."""

    def new_state(self) -> EventualDurable:
        return EventualDurable()

    def apply(self, state: EventualDurable, write: Any) -> None:
        state.apply([write])

    def compacts(self, write: Any) -> bool:
        return isinstance(write, Journal) and write.kind == "snap"

    def base(self, state: EventualDurable) -> list[Any]:
        out: list[Any] = [] if state.snapshot is None else [Journal("snap", state.snapshot)]
        return out + [Journal.of(e) for e in state.journal]

    def load(self, state: EventualDurable) -> EventualDurable:
        return state.load()

    def is_empty(self, state: EventualDurable) -> bool:
        return state.snapshot is None and not state.journal
