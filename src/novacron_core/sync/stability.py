"""Causal stability and garbage collection: what every replica has applied leaves the
forwarding buffers, and what every replica knows every replica has applied lets each key's
CRDT drop metadata in its own dot space."""

from __future__ import annotations

from novacron_core.clocks import CausalContext, Dot, VersionVector
from novacron_core.machine import NodeId
from novacron_core.sync.crdt.base import Crdt
from novacron_core.sync.epochs import Epochs


class Stability(Epochs):
    def _note_crdt_top(self, dot: Dot, key: str, delta: Crdt) -> None:
        """Remember which CRDT-level dots of the key update ``dot`` carries.

        Update dots ``(origin, seq)`` count every update of a node; a CRDT's dots count the
        mutations of one key (same replica id, another counter). An origin mints the key's
        dots in seq order, so once update ``(origin, s)`` is stable, every dot of ``origin`` in
        the key up to the highest one in that update's delta is stable too.
        """
        if not self.config.gc or type(self.store.get(key)) is not delta.state_class():
            # (a delta the store refused because the key holds another type maps to nothing)
            return
        top = delta.top(dot.replica)  # 0: counters, LWW registers, G/2P-sets
        if top:
            self._crdt_top[dot] = (key, top)

    def _collect(self) -> None:
        """Compute causal stability and drop what only unstable updates need.

        Two levels. ``stable``: the meet of every peer's last vector (of its current
        incarnation) and ours: updates every replica has applied. The forwarding buffer and
        in-flight records drop those (anti-entropy repairs anything a peer misses after that,
        e.g. after losing its disk). ``stable`` is also what we report to peers.

        ``safe``: the meet of our ``stable`` and every peer's last report: updates every replica
        knows every replica has applied. Only ``safe`` updates let a key be garbage-collected
        in its own dot space, because GC may drop what replicas hold (the RGA's tombstones,
        ``Crdt.COLLAPSES``) and a replica that comes back with less than it acknowledged must
        not be able to act on what it still holds without what was dropped. A restarted
        replica merges the full state of a caught-up peer that already forgot its
        predecessor before it may issue such ops; any
        report that peer gave before covered only dots it held (and still holds), any report
        it gives after counts the successor's own vector. A crashed or partitioned peer
        reports nothing new, so both points stay put until it is back.
        """
        peers_meet = self._stability()
        safe = self.stable
        for p in self.peers:
            safe = safe.meet(self.reports.get(p, VersionVector()))
        self.safe = safe
        for dot in [d for d in self.buffer if peers_meet is None or peers_meet.contains(d)]:
            del self.buffer[dot]
        for flying in self.inflight.values():
            for dot in [d for d in flying if d not in self.buffer]:
                del flying[dot]
        if self.config.gc:
            self._retire()
        if not self._crdt_top and not self._settling:
            return
        advanced: set[str] = set()
        # (``safe`` is a contiguous prefix of our own vector: we applied every earlier update
        # of the origin, so our copy of the key has seen every CRDT dot the mapping names)
        ready: list[tuple[Dot, str, int]] = []
        settling: list[tuple[Dot, str, int]] = []
        for dot in [d for d in self._crdt_top if safe.contains(d)]:
            key, top = self._crdt_top.pop(dot)
            settles = getattr(self.store.get(key), "SETTLES", False)
            (settling if settles else ready).append((dot, key, top))
        # a key whose type SETTLES advances only once this round's vectors are safe as well:
        # every update any replica made before it applied this round's safe ones is then
        # applied everywhere (an RGA tombstone may go once no insert naming it can arrive)
        if settling:
            frontier = self.seen.vv.copy()
            for row in self.known.values():
                frontier.merge_in_place(row)
            self._settling.append((frontier, settling))
        while self._settling and all(
            safe.get(r) >= c or self._retired(r) for r, c in self._settling[0][0].counters.items()
        ):
            ready += self._settling.pop(0)[1]
        for dot, key, top in ready:
            ks = self.key_stable.setdefault(key, VersionVector())
            if top > ks.get(dot.replica):
                ks.counters[dot.replica] = top
                advanced.add(key)
        for key in advanced:
            self.store.gc(key, self.key_stable[key])
        self.gc_keys += len(advanced)

    def _stability(self) -> VersionVector | None:
        """Recompute ``stable``; returns the meet of the peers' vectors (None: no peers)."""
        peers_meet: VersionVector | None = None
        for p in self.peers:
            vv = self.known.get(p, VersionVector())
            peers_meet = vv.copy() if peers_meet is None else peers_meet.meet(vv)
        mine = self.seen.vv
        self.stable = mine.copy() if peers_meet is None else peers_meet.meet(mine)
        return peers_meet

    def vector_entries(self) -> int:
        """Entries of every vector the engine keeps (what restarts add and retirement drops);
        the CRDTs' own contexts and counters are counted by :meth:`metadata`."""
        vvs = [
            self.seen.vv,
            *self.known.values(),
            *self.reports.values(),
            *self.key_clocks.values(),
            *self.key_stable.values(),
        ]
        return sum(len(v.counters) for v in vvs) + len(self.seen.cloud)

    def metadata(self) -> dict[str, int]:
        """Entries kept for causality rather than for values (what GC bounds)."""
        dots = cloud = vv = 0
        for _, v in self.store:
            ctx = getattr(v, "ctx", None)
            if isinstance(ctx, CausalContext):
                cloud += len(ctx.cloud)
                vv += len(ctx.vv.counters)
                entries = getattr(v, "entries", {})
                for e in entries.values():
                    dots += len(e) if isinstance(e, dict) else 1
        return {
            "buffer": len(self.buffer),
            "inflight": sum(len(f) for f in self.inflight.values()),
            "crdt_tops": len(self._crdt_top) + sum(len(w) for _, w in self._settling),
            "dots": dots,
            "cloud": cloud,
            "vv": vv,
        }

    def replication_lag(self, now: float) -> dict[NodeId, float]:
        """Per peer: age of the oldest update here that the peer has not acknowledged."""
        out: dict[NodeId, float] = {}
        for p in self.peers:
            known = self.known.get(p, VersionVector())
            oldest = min(
                (t for d, (_, t) in self.buffer.items() if not known.contains(d)), default=now
            )
            out[p] = now - oldest
        return out
