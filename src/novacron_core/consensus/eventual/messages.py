"""The eventual protocol's records (codec type ids 430-439): the sync engine's messages in
an envelope of their own (so a region node routes them to its group, not to its federation
replica), and the engine's journal entries as file-log records."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgpack

from novacron_core.codec import record
from novacron_core.sync.messages import AeLeaves, AeRanges, AeStates, Gossip, Push, PushAck, Update


@record(430)
@dataclass(frozen=True, slots=True)
class EventualSync:
    msg: Gossip | Push | PushAck | AeRanges | AeLeaves | AeStates


@record(431)
@dataclass(frozen=True, slots=True)
class Journal:
    """One entry of the sync engine's journal (``sync/persist.py``) other than an update:
    ``kind`` and its body, packed as ``runtime/sync_journal.py`` packs it."""

    kind: str
    body: bytes

    @staticmethod
    def of(entry: tuple[str, Any]) -> Journal | JournalUpdate:
        kind, body = entry
        if kind == "u":
            return JournalUpdate(body)  # (the common one: kept as an object until a file needs it)
        if kind == "snap":
            return Journal(kind, body)
        packed: bytes = msgpack.packb(body, use_bin_type=True)
        return Journal(kind, packed)

    def entry(self) -> tuple[str, Any]:
        if self.kind == "snap":
            return self.kind, self.body
        return self.kind, msgpack.unpackb(self.body, raw=False, strict_map_key=False)


@record(432)
@dataclass(frozen=True, slots=True)
class JournalUpdate:
    """A journal entry holding one update (applied locally or received)."""

    update: Update

    def entry(self) -> tuple[str, Any]:
        return "u", self.update


PEER_MESSAGES = (EventualSync,)
