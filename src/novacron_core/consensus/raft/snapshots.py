"""Snapshots: taking one (compacting the log), sending it whole or in chunks with a window
and resumption, assembling and installing one."""

from __future__ import annotations

from novacron_core.consensus.interface import (
    Restored,
)
from novacron_core.consensus.raft.membership import Membership
from novacron_core.consensus.raft.messages import (
    AppendResp,
    InstallSnapshot,
    SnapshotChunk,
    SnapshotChunkResp,
    SnapshotMeta,
)
from novacron_core.consensus.raft.progress import SNAPSHOT, Progress
from novacron_core.consensus.raft.storage import (
    SaveCapturedSnapshot,
    SaveSnapshot,
)
from novacron_core.consensus.snapshot_data import Capturing, Deferred, snapshot_bytes
from novacron_core.machine import NodeId


class Incoming:
    """A chunked snapshot being received: the contiguous prefix, pieces that came early
    (after a lost one; at most a window of them), and the size once the last piece came."""

    __slots__ = ("data", "early", "meta", "total")

    def __init__(self, meta: SnapshotMeta) -> None:
        self.meta = meta
        self.data = bytearray()
        self.early: dict[int, bytes] = {}
        self.total: int | None = None

    def absorb(self, offset: int, data: bytes) -> None:
        """Add a piece starting at or before the prefix's end, then any early ones it
        joins up with."""
        while True:
            end = offset + len(data)
            if end > len(self.data):
                self.data += data[len(self.data) - offset :]
            for k in [k for k in self.early if k + len(self.early[k]) <= len(self.data)]:
                del self.early[k]  # wholly inside the prefix now
            nxt = next((k for k in sorted(self.early) if k <= len(self.data)), None)
            if nxt is None:
                return
            offset, data = nxt, self.early.pop(nxt)


class SnapshotTransfer(Membership):
    def _on_snapshot(self, src: NodeId, m: InstallSnapshot) -> None:
        self._heard_leader(src)
        meta = m.meta
        if meta.index <= self.commit:
            self._send(src, AppendResp(self.term, True, match=self.commit))
            return
        if self.log.matches(meta.index, meta.term):
            # We already hold the entries: just fast-forward the commit index.
            self._commit_to(meta.index)
            self._send(src, AppendResp(self.term, True, match=meta.index))
            return
        self._install_snapshot(src, meta, m.data)

    def _on_snapshot_chunk(self, src: NodeId, m: SnapshotChunk) -> None:
        self._heard_leader(src)
        meta = m.meta
        if meta.index <= self.commit or self.log.matches(meta.index, meta.term):
            self._incoming = None
            self._on_snapshot(src, InstallSnapshot(m.term, meta, b"", m.commit))
            return
        inc = self._incoming
        if inc is None or inc.meta != meta:
            inc = self._incoming = Incoming(meta)
        if m.done:
            inc.total = m.offset + len(m.data)
        if m.offset > len(inc.data):
            # A piece ahead of a lost one: keep a window's worth, so that only the lost
            # piece needs resending, and say where the gap is.
            if len(inc.early) < self.cfg.snapshot_window:
                inc.early[m.offset] = m.data
        else:
            inc.absorb(m.offset, m.data)
        if inc.total is not None and len(inc.data) >= inc.total:
            self._incoming = None
            self._install_snapshot(src, meta, bytes(inc.data[: inc.total]))
            return
        resp = SnapshotChunkResp(self.term, meta.index, meta.term, len(inc.data), not inc.early)
        self._send(src, resp)

    def _install_snapshot(self, src: NodeId, meta: SnapshotMeta, data: bytes) -> None:
        self.sm.restore(data)
        self.log.compact(meta)
        self.snap_data = data
        self.out.writes.append(SaveSnapshot(meta, data))
        self.out.sync = True
        self.commit = self.applied = meta.index
        self.applied_conf = meta.config
        self._reload_conf()
        self.out.committed.append(Restored(meta.index))
        self._send(src, AppendResp(self.term, True, match=meta.index))

    def _take_snapshot(self) -> None:
        term = self.log.term(self.applied)
        assert term is not None
        meta = SnapshotMeta(self.applied, term, self.applied_conf)
        self.log.compact(meta)
        # Not synced: the full log it replaces is already durable, so losing it is harmless.
        if isinstance(self.sm, Capturing):
            # Frozen now, encoded later (by the storage thread, or here if a follower needs
            # it first): encoding a big state in this step would hold the driver's loop.
            deferred = Deferred(self.sm.capture())
            self.snap_data = deferred
            self.out.writes.append(SaveCapturedSnapshot(meta, deferred))
        else:
            data = self.sm.snapshot()
            self.snap_data = data
            self.out.writes.append(SaveSnapshot(meta, data))

    def _send_snapshot(self, peer: NodeId, pr: Progress) -> None:
        pr.state = SNAPSHOT
        pr.pending_snapshot = self.log.snap.index
        pr.snapshot_sent_at = self.now
        pr.inflight.clear()
        self.stats["snapshots_sent"] += 1
        data = self.snap_data = snapshot_bytes(self.snap_data)
        if len(data) <= self.cfg.snapshot_chunk_bytes:
            msg = InstallSnapshot(self.term, self.log.snap, data, self.commit)
            self.stats["snapshot_bytes_sent"] += len(data)
            self._send(peer, msg)
            return
        # From byte 0: if the follower already holds a prefix (an earlier attempt, another
        # leader), its first answer says so and we skip ahead. Costs a window at most.
        pr.snap_meta, pr.snap_data = self.log.snap, data
        pr.snap_offset = pr.snap_acked = 0
        pr.snap_rewound = -1
        self._send_chunks(peer, pr)

    def _send_chunks(self, peer: NodeId, pr: Progress) -> None:
        """Fill the window: chunks up to ``snapshot_window`` beyond what was confirmed."""
        assert pr.snap_meta is not None
        size, data = self.cfg.snapshot_chunk_bytes, pr.snap_data
        limit = pr.snap_acked + self.cfg.snapshot_window * size
        while pr.snap_offset < len(data) and pr.snap_offset < limit:
            chunk = self._chunk(pr, pr.snap_offset)
            self._send(peer, chunk)
            pr.snap_offset += len(chunk.data)

    def _chunk(self, pr: Progress, lo: int) -> SnapshotChunk:
        assert pr.snap_meta is not None
        data = pr.snap_data
        hi = min(lo + self.cfg.snapshot_chunk_bytes, len(data))
        self.stats["snapshot_bytes_sent"] += hi - lo
        return SnapshotChunk(self.term, pr.snap_meta, lo, data[lo:hi], hi == len(data))

    def _on_chunk_resp(self, src: NodeId, m: SnapshotChunkResp) -> None:
        pr = self.progress.get(src)
        if pr is None:
            return
        pr.heard_at = self.now
        meta = pr.snap_meta
        same = meta is not None and (m.index, m.snap_term) == (meta.index, meta.term)
        if pr.state != SNAPSHOT or not same:
            return  # about a transfer that ended or was replaced
        pr.snapshot_sent_at = self.now  # progress: the transfer is alive, keep it going
        pr.snap_acked = max(pr.snap_acked, m.received)
        if m.received > pr.snap_offset:
            pr.snap_offset = m.received  # it holds more than we sent: skip ahead (resuming)
        elif not m.ok and m.received != pr.snap_rewound and m.received < pr.snap_offset:
            # A piece was lost (the follower holds the ones after it): resend that one,
            # once per gap — every later piece reports the same gap. Were the resend lost
            # too, the transfer stalls until the leader's timeout restarts (resumes) it.
            pr.snap_rewound = m.received
            self._send(src, self._chunk(pr, m.received))
        self._send_chunks(src, pr)
