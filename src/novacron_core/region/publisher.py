"""The publisher: what the home region's leader committed becomes CRDT deltas (sans-IO).

It follows the group member's ``Ready`` — ``soft_state`` for role and term, ``committed``
for what was applied — and never the member's fields. While this node leads and its term's
barrier entry is committed (before that its state may lack what an earlier leader committed
and published), every batch's VM keys are compared with the federation store and each new,
changed or deleted record is published, stamped with the log index it was read at
(:func:`~novacron_core.federation.vmflow.stamp`). What was published before this term, or
before a snapshot replaced the state, is not known here, so then every key is compared.

A leader also publishes its region's heartbeat mark (``hb/{region}`` = wall-clock ms) every
``heartbeat_interval``: a replica's lag behind a region is the age of the newest mark it
holds from there.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from novacron_core.clocks import HLC
from novacron_core.consensus.interface import BARRIER, COMMAND, LEADER, Restored, SoftState
from novacron_core.consensus.kv import command_key
from novacron_core.federation import vmflow
from novacron_core.sync.engine import Mutate
from novacron_core.sync.store import Store


class Publisher:
    def __init__(self, region: str, heartbeat_interval: float = 0.2) -> None:
        self.region = region
        self.heartbeat_interval = heartbeat_interval
        self.leading = False
        self.term = -1
        self.established = False  # leading, and this term's barrier is committed
        self.applied = 0  # the highest index applied here, as committed entries told
        self._dirty: set[str] = set()
        self._full = True
        self.next_heartbeat = 0.0
        self.published = 0  # VM record changes published
        self.heartbeats = 0  # heartbeat marks published

    def observe(self, committed: list[Any], soft: SoftState | None) -> None:
        """Take in one Ready's ``committed`` and ``soft_state`` (in that Ready's order: the
        soft state is the member's state after the entries were applied)."""
        if soft is not None and (soft.term != self.term or (soft.role == LEADER) != self.leading):
            self.term, self.leading = soft.term, soft.role == LEADER
            self.established = False
            self._dirty.clear()
            self._full = True
        for e in committed:
            if isinstance(e, Restored):
                self.applied = max(self.applied, e.index)
                self._full = True
                continue
            self.applied = max(self.applied, e.index)
            if not self.leading:
                continue
            if e.kind == COMMAND:
                key = command_key(e.data)
                if key.startswith(vmflow.PREFIX):
                    self._dirty.add(key)
            elif e.kind == BARRIER and e.term == self.term:
                self.established = True

    def republish(self) -> None:
        """Compare every key on the next :meth:`mutations` (the store was replaced)."""
        self._full = True

    def mutations(self, committed_state: Mapping[str, bytes], store: Store) -> list[Mutate]:
        """What to publish now: the records that differ between the group's committed state
        and the federation store (nothing unless this node is an established leader)."""
        if not (self.leading and self.established):
            return []
        keys: set[str] | None = self._dirty
        if self._full:
            keys, self._full = None, False
        self._dirty = set()
        ts = vmflow.stamp(self.applied, self.region)
        out = [
            vmflow.as_mutation(change, ts)
            for change in vmflow.changes(committed_state, store, self.region, keys)
        ]
        self.published += len(out)
        return out

    def heartbeat(self, now: float, wall_ms: int, hlc: HLC) -> Mutate | None:
        """The region's heartbeat mark, when one is due (an established leader only)."""
        if not (self.leading and self.established) or now < self.next_heartbeat:
            return None
        self.next_heartbeat = now + self.heartbeat_interval
        self.heartbeats += 1
        return vmflow.heartbeat(self.region, hlc, wall_ms)

    def wake(self) -> float | None:
        return self.next_heartbeat if self.leading and self.established else None
