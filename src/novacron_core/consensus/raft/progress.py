"""The leader's view of each follower (etcd-raft's Progress, simplified)."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from novacron_core.consensus.raft.messages import SnapshotMeta

PROBE, REPLICATE, SNAPSHOT = "probe", "replicate", "snapshot"


@dataclass(slots=True)
class Progress:
    """``probe``: one append at a time until the follower's log position is known;
    ``replicate``: optimistic pipelining of up to ``max_inflight`` appends;
    ``snapshot``: an InstallSnapshot is in flight, appends wait for its answer. A chunked
    one keeps the snapshot being sent (a newer local one may replace ``log.snap`` meanwhile),
    the next byte to send and the bytes the follower confirmed."""

    next: int
    match: int = 0
    state: str = PROBE
    probe_sent: bool = False
    inflight: deque[int] = field(default_factory=deque)  # last index of each append in flight
    pending_snapshot: int = 0
    snapshot_sent_at: float = 0.0  # when it was sent, or last confirmed progress (chunks)
    snap_meta: SnapshotMeta | None = None  # set while a chunked transfer runs
    snap_data: bytes = b""
    snap_offset: int = 0
    snap_acked: int = 0
    snap_rewound: int = -1  # the offset last resent from after a loss
    heard_at: float = 0.0  # when it last answered (CheckQuorum)
    acked_ctx: int = 0  # highest ReadIndex round this follower acknowledged

    def become_probe(self) -> None:
        self.state = PROBE
        self.probe_sent = False
        self.inflight.clear()
        self._end_transfer()

    def become_replicate(self) -> None:
        self.state = REPLICATE
        self.inflight.clear()
        self.next = max(self.next, self.match + 1)
        self._end_transfer()

    def _end_transfer(self) -> None:
        self.snap_meta, self.snap_data = None, b""  # do not pin an old snapshot in memory
        self.snap_offset = self.snap_acked = 0
        self.snap_rewound = -1

    def free_to(self, index: int) -> None:
        while self.inflight and self.inflight[0] <= index:
            self.inflight.popleft()
