"""Synchronous replication (``replication.mode: sync``, ``syncFactor`` k): a VM write at
home is answered only once k other regions hold the record it left (sans-IO).

The publisher's deltas for VM records are then pushed asking for acknowledgements; a node
acknowledges once the update is journaled and fsynced (``sync.gossip``). The client's OK
reply to a proposal that changed a VM record is held until nodes of k regions other than
this one acknowledged the latest record published for that key, or the timeout passes: then
the reply is ``unknown`` (committed at home, replication not confirmed; a retry with the same
client session answers from the session, and waits for the record's acknowledgements again).
A key this node has not published itself (its record came from an earlier leader) is
published once more, with the same value and a current stamp, to be acknowledged.
"""

from __future__ import annotations

from typing import Any

from novacron_core.codec import CodecError, decode
from novacron_core.consensus.interface import OK, UNKNOWN, Reply
from novacron_core.consensus.kv import KVCommand, KVResult
from novacron_core.federation import vmflow
from novacron_core.sync.engine import SyncNode


class SyncWait:
    def __init__(self, region: str) -> None:
        self.region = region
        self.factor = 0  # k; 0: asynchronous, nothing is held
        self.timeout = 2.0
        self._keys: dict[Any, str] = {}  # proposal request id -> the VM key it writes
        self._latest: dict[str, int] = {}  # VM key -> seq of our latest acknowledged publish
        self._held: list[tuple[Any, Reply, str, float]] = []  # (request, reply, key, until)
        self.confirmed = 0
        self.timed_out = 0

    def configure(self, factor: int, timeout: float) -> None:
        self.factor, self.timeout = factor, timeout

    def proposed(self, rid: Any, data: bytes) -> None:
        if not self.factor:
            return
        try:
            key = decode(data, KVCommand).key
        except CodecError:
            return
        if key.startswith(vmflow.PREFIX):
            self._keys[rid] = key

    def published(self, key: str, seq: int, replica: SyncNode) -> None:
        key = vmflow.kv_key(key)  # the federation's copy key -> the group's key
        old = self._latest.get(key)
        if old is not None:
            replica.forget_ack(old)
        self._latest[key] = seq

    def hold(self, now: float, rid: Any, reply: Reply) -> str | None:
        """The VM key whose acknowledgements ``reply`` must wait for, or None to answer
        now (not a VM write, not a change, or asynchronous replication)."""
        key = self._keys.pop(rid, None)
        if key is None or not self.factor or reply.status != OK:
            return None
        if reply.value is not None:
            try:
                if not decode(reply.value, KVResult).ok:
                    return None  # a compare-and-swap that changed nothing
            except CodecError:
                pass
        self._held.append((rid, reply, key, now + self.timeout))
        return key

    def unpublished(self, key: str) -> bool:
        return key not in self._latest

    def _confirmed(self, key: str, replica: SyncNode) -> bool:
        seq = self._latest.get(key)
        if seq is None:
            return False
        regions = replica.acknowledged_by(seq) - {self.region}
        return len(regions) >= self.factor

    def release(self, now: float, replica: SyncNode | None) -> list[tuple[Any, Reply]]:
        """The held replies that may go now (confirmed), or must (timed out)."""
        if not self._held:
            return []
        out: list[tuple[Any, Reply]] = []
        keep: list[tuple[Any, Reply, str, float]] = []
        for rid, reply, key, until in self._held:
            if replica is not None and self._confirmed(key, replica):
                self.confirmed += 1
                out.append((rid, reply))
            elif now >= until:
                self.timed_out += 1
                out.append(
                    (
                        rid,
                        Reply(
                            UNKNOWN,
                            leader=reply.leader,
                            detail=f"committed in {self.region}, but {self.factor} other "
                            f"region(s) did not confirm holding it within {self.timeout:g} s "
                            "(replication mode sync): retry with the same client session",
                        ),
                    )
                )
            else:
                keep.append((rid, reply, key, until))
        self._held = keep
        return out

    def wake(self) -> float | None:
        return min((until for *_, until in self._held), default=None)

    @property
    def holding(self) -> int:
        return len(self._held)
