"""Merkle anti-entropy (repairs what gossip cannot: updates evicted from every buffer,
replicas restarted from an old snapshot) and the catch-up exchange of a restarted replica."""

from __future__ import annotations

from typing import Any

from novacron_core.clocks import CausalContext, VersionVector
from novacron_core.machine import NodeId, Ready
from novacron_core.sync.crdt.base import decode_crdt, encode_crdt
from novacron_core.sync.engine_state import parse_floors
from novacron_core.sync.merkle import LEAVES, RANGES
from novacron_core.sync.messages import AeLeaves, AeRanges, AeStates
from novacron_core.sync.stability import Stability


class AntiEntropy(Stability):
    def _anti_entropy(self, ready: Ready) -> None:
        if self.peers:
            peer = self.rng.choice(sorted(self.peers))
            ready.send(peer, AeRanges(self.store.merkle.range_hashes(), self.epoch))

    # A restarted replica catches up with one anti-entropy exchange it starts itself: the
    # peer forgets the predecessor on the first message, then (if caught up itself) answers
    # with its vector at that moment even when nothing differs; once the states of every
    # differing leaf are merged, our store holds everything that peer held then, so our
    # vector may take its vector in (journaled, so a restart keeps it).

    def _catchup_start(self, now: float, ready: Ready) -> None:
        self._catchup += 1
        self._catchup_vv = None
        # back off: an attempt's answer (whole states of the keys that differ) may take long
        self._next_catchup = now + self.config.retry_after * 2 ** min(self._catchup - 1, 4)
        rest = sorted(set(self.peers) - self._merged_from)
        peer = self.rng.choice(rest or sorted(self.peers))
        ready.send(
            peer, AeRanges(self.store.merkle.range_hashes(), self.epoch, catchup=self._catchup)
        )

    def _catchup_done(
        self, ready: Ready, src: NodeId, partial: bool, vv: dict[str, int], floors: Any
    ) -> None:
        """We hold everything ``src`` held when it answered. A caught-up peer suffices; a
        peer catching up itself (``partial``) counts once every peer's state is merged
        (after a whole-cluster restart no peer is caught up, and none still uses what an
        earlier incarnation reported, so the union of their states is all there is)."""
        self._catchup_vv = None
        self._merged_from.add(src)
        if not partial or self._merged_from >= set(self.peers):
            self.caught_up = True
        else:
            self._next_catchup = 0.0  # on to a peer not merged yet
        try:
            their = VersionVector.from_wire(vv)
            retired = parse_floors(floors)
        except ValueError:
            return
        self.seen.merge(CausalContext(their))
        self._journal(ready, ("seen", their.to_wire()))
        # the peer's store held every retired epoch's effects, and now ours does too
        if self._raise_floors(retired):
            self._forget_retired()
            self._journal(ready, ("floors", dict(self.floors)))

    def _on_ranges(self, src: NodeId, msg: AeRanges, ready: Ready) -> None:
        self._incarnation(src, msg.epoch)
        mine = self.store.merkle.range_hashes()
        if len(msg.hashes) != len(mine):
            return
        differ = [r for r, (a, b) in enumerate(zip(mine, msg.hashes, strict=True)) if a != b]
        behind = self.epochs.get(src, 0)
        if msg.catchup and msg.epoch < behind:  # its disk went back in time: re-epoch first
            ready.send(src, AeLeaves({}, msg.catchup, refused=True, epoch=behind))
        elif msg.catchup:
            leaves = {r: self.store.merkle.leaf_hashes(r) for r in differ}
            vv = self.seen.vv.to_wire()
            partial = not self.caught_up
            ready.send(
                src,
                AeLeaves(leaves, msg.catchup, vv, floors=dict(self.floors), partial=partial),
            )
        elif differ:
            ready.send(src, AeLeaves({r: self.store.merkle.leaf_hashes(r) for r in differ}))

    def _on_leaves(self, src: NodeId, msg: AeLeaves, ready: Ready) -> None:
        if msg.refused and msg.epoch > self.epoch:
            self._reincarnate(msg.epoch, ready)
            return
        catchup = msg.catchup and msg.catchup == self._catchup and not self.caught_up
        if msg.catchup and not catchup:
            return  # an answer to an attempt we gave up on
        if msg.refused:
            self._next_catchup = 0.0  # ask another peer on the next tick
            return
        leaves: list[int] = []
        for r, theirs in msg.leaves.items():
            if not 0 <= r < RANGES or len(theirs) != LEAVES:
                return
            mine = self.store.merkle.leaf_hashes(r)
            leaves += [r * LEAVES + i for i in range(LEAVES) if mine[i] != theirs[i]]
        if catchup and not leaves:
            self._catchup_done(ready, src, msg.partial, msg.vv, msg.floors)
        elif leaves:
            if catchup:
                self._catchup_vv = msg.vv
                self._catchup_floors = msg.floors
                self._catchup_partial = msg.partial
            ready.send(src, AeStates(leaves, self._states(leaves), True, msg.catchup))

    def _on_states(self, src: NodeId, msg: AeStates, ready: Ready) -> None:
        for key, blob in msg.states.items():
            try:
                value = decode_crdt(blob)
            except ValueError:
                continue
            self.store.merge(key, value)
            self._journal(ready, ("s", (key, blob)))
        if msg.reply:
            ready.send(src, AeStates(msg.leaves, self._states(msg.leaves), False, msg.catchup))
        elif (
            msg.catchup
            and msg.catchup == self._catchup
            and self._catchup_vv is not None
            and not self.caught_up
        ):
            vv, floors, partial = self._catchup_vv, self._catchup_floors, self._catchup_partial
            self._catchup_done(ready, src, partial, vv, floors)

    def _states(self, leaves: list[int]) -> dict[str, bytes]:
        out: dict[str, bytes] = {}
        for leaf in leaves:
            if 0 <= leaf < RANGES * LEAVES:
                for key in self.store.merkle.keys_in(leaf):
                    v = self.store.get(key)
                    if v is not None:
                        out[key] = encode_crdt(v)
        return out
