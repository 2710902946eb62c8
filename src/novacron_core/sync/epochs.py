"""Restart epochs: each start of a node is a new replica (``node~epoch``), and epochs that
every replica has caught up on are retired from every vector the engine keeps."""

from __future__ import annotations

from collections.abc import Mapping

from novacron_core.clocks import VersionVector
from novacron_core.machine import NodeId, Ready
from novacron_core.sync.engine_state import EngineState, split_replica


class Epochs(EngineState):
    def _successor(self, epoch: int) -> int:
        """The epoch after ``epoch``: ``1`` on a first start (an empty disk), else
        ``restarts << 16 | 16 random bits``."""
        count = (epoch >> 16 if epoch >= 1 << 16 else epoch) + 1
        return 1 if count == 1 else count << 16 | self._nonce

    def _reincarnate(self, behind: int, ready: Ready) -> None:
        """A peer knows an epoch of ours at least as high as this one: our disk went back in
        time. Take the next epoch after it (a new replica id; dots minted under this one stay
        unique and valid) and catch up again, so that peers drop what they kept about it."""
        self.epoch = self._successor(behind)
        self.replica = self.store.replica = self.hlc.replica = f"{self.id}~{self.epoch}"
        self._seq = 0
        self._journal(ready, ("epoch", self.epoch))
        ready.sync = True
        self.caught_up = False
        self._catchup_vv = None
        self._merged_from = set()
        self._next_catchup = 0.0

    def _incarnation(self, src: NodeId, epoch: int) -> bool:
        """Note ``src``'s epoch; True if it is newer than any heard before.

        A newer incarnation may hold less than its predecessor acknowledged (lost unsynced
        writes, an old snapshot), so everything the predecessor reported is dropped *before*
        it can be used again: its vector, its stability report, what was in flight to it.
        """
        if epoch <= self.epochs.get(src, 0):
            return False
        self.epochs[src] = epoch
        self.known[src] = VersionVector()
        self.reports.pop(src, None)
        self.peer_floors.pop(src, None)
        self.inflight[src] = {}
        return True

    def _dead_and_safe(self, replica: str, seq: int) -> bool:
        """A write of a dead epoch that every replica has applied: a writer that retired the
        epoch leaves it out of its per-key clock, so its absence does not mean concurrency
        (conflict detection treats retired epochs as seen)."""
        if self.safe.get(replica) < seq:
            return False
        node, epoch = split_replica(replica)
        current = self.epoch if node == self.id else self.epochs.get(node, 0)
        return epoch is not None and epoch < current

    def _retired(self, replica: str) -> bool:
        node, epoch = split_replica(replica)
        return epoch is not None and epoch <= self.floors.get(node, 0)

    def _strip(self, vv: VersionVector) -> None:
        for r in [r for r in vv.counters if self._retired(r)]:
            del vv.counters[r]

    def _raise_floors(self, floors: Mapping[str, int]) -> bool:
        raised = False
        for node, f in floors.items():
            if f > self.floors.get(node, 0):
                self.floors[node] = f
                raised = True
        return raised

    def _retire(self) -> None:
        """Retire dead epochs: drop their entries from every vector the engine keeps.

        Epoch ``x`` of node ``N`` is retired here once a newer epoch of ``N`` is known here,
        ``N~x``'s updates we hold are contiguous (``n`` of them) and none is buffered, and
        every peer either retired it already or both sent a vector and reported stable
        exactly ``n`` of them: every replica has every update of ``N~x`` anyone has, and
        knows that all others do. Epochs retire in order per node, so one floor per node
        (``floors[N]``: every epoch up to it is retired) replaces all their entries; updates
        of retired epochs are ignored, vectors on the wire leave them out, and peers learn
        the floors with the vectors (a catching-up replica takes its source's).
        """
        epochs: dict[str, set[int]] = {}

        def note(replica: str) -> None:
            node, epoch = split_replica(replica)
            if epoch is not None and epoch > self.floors.get(node, 0):
                epochs.setdefault(node, set()).add(epoch)

        for r in self.seen.vv.counters:
            note(r)
        for vv in [*self.known.values(), *self.reports.values()]:
            for r in vv.counters:
                note(r)
        if not epochs:
            return
        clouded = {d.replica for d in self.seen.cloud}
        buffered = {d.replica for d in self.buffer}
        raised: dict[str, int] = {}
        for node, found in epochs.items():
            current = self.epoch if node == self.id else self.epochs.get(node, 0)
            for x in sorted(found):
                replica = f"{node}~{x}"
                if x >= current or replica in clouded or replica in buffered:
                    break
                if not self._agreed(node, x, replica):
                    break
                raised[node] = x
        if raised and self._raise_floors(raised):
            self._forget_retired()
            self._retiring.append(("floors", dict(self.floors)))

    def _agreed(self, node: str, x: int, replica: str) -> bool:
        n = self.seen.vv.get(replica)
        for p in self.peers:
            if self.peer_floors.get(p, {}).get(node, 0) >= x:
                continue
            report = self.reports.get(p)
            row = self.known.get(p, VersionVector())
            if report is None or row.get(replica) != n or report.get(replica) != n:
                return False
        return True

    def _forget_retired(self) -> None:
        if not self.floors:
            return
        self._strip(self.seen.vv)
        self.seen.cloud = {d for d in self.seen.cloud if not self._retired(d.replica)}
        for dot in [d for d in self._crdt_top if self._retired(d.replica)]:
            del self._crdt_top[dot]  # (those keys are just not collected further)
        for dot in [d for d in self.buffer if self._retired(d.replica)]:
            del self.buffer[dot]  # (e.g. replayed from the journal: every replica has them)
        for flying in self.inflight.values():
            for dot in [d for d in flying if self._retired(d.replica)]:
                del flying[dot]
        for vv in [
            self.stable,
            self.safe,
            *self.known.values(),
            *self.reports.values(),
            *self.key_clocks.values(),
            *self.key_stable.values(),
        ]:
            self._strip(vv)
