"""Push-pull gossip rounds: vectors, the updates a peer lacks, stability reports, and
what an older incarnation of a peer is told; and the eager push of a new update."""

from __future__ import annotations

from novacron_core.clocks import Dot, VersionVector
from novacron_core.machine import NodeId, Ready
from novacron_core.sync.antientropy import AntiEntropy
from novacron_core.sync.engine_state import parse_floors, split_replica
from novacron_core.sync.messages import AeLeaves, Gossip, Push, PushAck, Traces, Update, trace_key


class GossipRounds(AntiEntropy):
    def _traces_of(self, updates: list[Update]) -> Traces:
        """The carriers of the traced ones among ``updates`` (nearly always none)."""
        if not len(self.traces):
            return {}
        out: Traces = {}
        for u in updates:
            carrier = self.traces.get(Dot(u.origin, u.seq))
            if carrier:
                out[trace_key(u.origin, u.seq)] = carrier
        return out

    def _missing_for(
        self, peer: NodeId, now: float, vv: VersionVector | None = None
    ) -> list[Update]:
        """Buffered updates ``peer`` lacks (by ``vv`` or what it last told us)."""
        known = vv if vv is not None else self.known.get(peer, VersionVector())
        if not self.seen.cloud and known.dominates(self.seen.vv):
            return []  # it has every update we applied, so every one we buffer
        inflight = self.inflight.setdefault(peer, {})
        retry = now - self.config.retry_after
        out: list[Update] = []
        for dot, (upd, _) in self.buffer.items():
            if known.contains(dot) or inflight.get(dot, -1.0) > retry:
                continue
            out.append(upd)
            inflight[dot] = now
            if len(out) >= self.config.max_batch:
                break
        return out

    def _report(self, vv: dict[str, int]) -> list[int]:
        """Our stability report as lags behind ``vv`` (in its order): small ints on the wire."""
        stable = self.stable.counters
        if not stable:
            return []
        return [c - stable.get(r, 0) for r, c in vv.items()]

    def _gossip_round(self, now: float, ready: Ready) -> None:
        cfg = self.config
        vv = self.seen.vv.to_wire()
        report = self._report(vv)
        if cfg.pull:
            if (
                cfg.one_pull_at_a_time
                and self._pull_outstanding is not None
                and now - self._pull_outstanding < cfg.pull_timeout
            ):
                return
            for p in self.selector.pick(cfg.fanout):
                ready.send(p, Gossip(vv, [], [], True, self.epoch, report, dict(self.floors)))
            self._pull_outstanding = now
            return
        idle = self._rounds % cfg.idle_every == 0
        for p in self.selector.pick(cfg.fanout):
            ups = self._missing_for(p, now)
            if ups or idle:
                traces = self._traces_of(ups)
                ready.send(p, Gossip.of(vv, ups, True, self.epoch, report, self.floors, traces))

    def _on_gossip(self, now: float, src: NodeId, msg: Gossip, ready: Ready) -> None:
        try:
            their = VersionVector.from_wire(msg.vv)
            updates = msg.updates()
            report = self._parse_report(msg)
            floors = parse_floors(msg.floors)
        except ValueError:
            return
        if self.floors:
            self._strip(their)
            if report is not None:
                self._strip(report)
        if self._incarnation(src, msg.epoch):
            self.known[src] = their
            if report is not None:
                self.reports[src] = report
            self.peer_floors[src] = floors
        elif msg.epoch == self.epochs.get(src, 0):
            self.known.setdefault(src, VersionVector()).merge_in_place(their)
            if report is not None:
                self.reports[src] = report
            self.peer_floors[src] = floors
        elif msg.reply:  # an older incarnation asks: tell it (its disk may have gone back)
            ready.send(src, AeLeaves({}, refused=True, epoch=self.epochs[src]))
        # (an older incarnation's vector and report are stale: its successor replaced them)
        known = self.known.setdefault(src, VersionVector())
        inflight = self.inflight.setdefault(src, {})
        if inflight:
            for dot in [d for d in inflight if known.contains(d)]:
                del inflight[dot]
        for upd in updates:
            fresh = upd.seq > 0 and not self.seen.contains(Dot(upd.origin, upd.seq))
            if fresh and self.floors and self._retired(upd.origin):
                continue  # every replica applied it before the epoch was retired
            carrier = msg.traces.get(trace_key(upd.origin, upd.seq), b"") if msg.traces else b""
            if fresh and self._apply_received(upd, carrier, now):
                self._journal(ready, ("u", upd))
        if self.config.pull and not msg.reply:
            self._pull_outstanding = None
        if msg.reply:
            # exact: the sender told us its vector; skip nothing that is merely in flight
            self.inflight[src] = {}
            ups = self._missing_for(src, now, their)
            if ups or updates or self.config.pull:  # a puller waits for an answer
                vv = self.seen.vv.to_wire()
                msg_out = Gossip.of(
                    vv, ups, False, self.epoch, self._report(vv), self.floors, self._traces_of(ups)
                )
                ready.send(src, msg_out)

    @staticmethod
    def _parse_report(msg: Gossip) -> VersionVector | None:
        if not msg.stable:
            return None
        if len(msg.stable) != len(msg.vv):
            raise ValueError("a stability report has one lag per vector entry")
        out: dict[str, int] = {}
        for (r, c), lag in zip(msg.vv.items(), msg.stable, strict=True):
            if type(lag) is not int or not 0 <= lag <= c:
                raise ValueError("malformed stability report")
            out[r] = c - lag
        return VersionVector(out)

    # ------------------------------------------------------------ eager push

    def _push(self, now: float, upd: Update, ready: Ready, ack: bool = False) -> None:
        """Send a new local update to every peer of our region and to one peer of each
        other region (which relays it). ``ack``: every receiver acknowledges it (see
        :meth:`acknowledged_by`)."""
        traces = self._traces_of([upd])
        direct = Push.of([upd], self.epoch, relay=False, ack=ack, traces=traces)
        relayed = Push.of([upd], self.epoch, relay=True, ack=ack, traces=traces)
        for p in self.selector.local_peers:
            ready.send(p, direct)
        for p in self.selector.one_per_region():
            ready.send(p, relayed)
        self._pushed([upd], now)

    def _pushed(self, updates: list[Update], now: float) -> None:
        """Pushes reach every replica (relays cover the peers we did not send to), so the
        rounds treat these updates as in flight to every peer: they repeat them to a peer
        only after ``retry_after`` and only if its vector still lacks them."""
        for flying in (self.inflight.setdefault(p, {}) for p in self.peers):
            for u in updates:
                flying[Dot(u.origin, u.seq)] = now

    def _on_push(self, now: float, src: NodeId, msg: Push, ready: Ready) -> None:
        try:
            updates = msg.updates()
        except ValueError:
            return
        self._incarnation(src, msg.epoch)  # a new one: what we knew of its predecessor goes
        fresh: list[Update] = []
        for upd in updates:
            if upd.seq <= 0 or self.seen.contains(Dot(upd.origin, upd.seq)):
                continue
            if self.floors and self._retired(upd.origin):
                continue
            carrier = msg.traces.get(trace_key(upd.origin, upd.seq), b"") if msg.traces else b""
            if self._apply_received(upd, carrier, now):
                self._journal(ready, ("u", upd))
                fresh.append(upd)
        self._pushed(fresh, now)
        if msg.ack:
            self._acknowledge(updates, ready)
        if msg.relay and fresh:
            out = Push.of(
                fresh, self.epoch, relay=False, ack=msg.ack, traces=self._traces_of(fresh)
            )
            origins = {split_replica(u.origin)[0] for u in fresh}
            for p in self.selector.local_peers:
                if p != src and p not in origins:
                    ready.send(p, out)

    def _acknowledge(self, updates: list[Update], ready: Ready) -> None:
        """Tell each origin we hold its updates: fresh ones were journaled in this Ready,
        whose ``sync`` makes the driver fsync before the acknowledgement leaves."""
        by_origin: dict[str, list[int]] = {}
        for upd in updates:
            if self.seen.contains(Dot(upd.origin, upd.seq)):
                by_origin.setdefault(upd.origin, []).append(upd.seq)
        for origin, seqs in by_origin.items():
            node = split_replica(origin)[0]
            if node != self.id:
                ready.send(node, PushAck(origin, seqs))
                ready.sync = True

    def _on_push_ack(self, src: NodeId, msg: PushAck) -> None:
        if msg.origin != self.replica:
            return  # about an earlier incarnation of ours
        region = self.peers.get(src)
        for seq in msg.seqs:
            holders = self.awaiting.get(seq)
            if holders is not None and region is not None:
                holders.add(region)

    def acknowledged_by(self, seq: int) -> set[str]:
        """The regions whose nodes acknowledged our update ``seq`` (one made with
        ``Mutate.ack``); empty once :meth:`forget_ack` was called."""
        return self.awaiting.get(seq, set())

    def forget_ack(self, seq: int) -> None:
        self.awaiting.pop(seq, None)
