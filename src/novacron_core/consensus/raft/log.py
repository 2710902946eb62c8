"""The in-memory view of the log: a snapshot prefix plus the entries after it."""

from __future__ import annotations

from novacron_core.consensus.raft.messages import Entry, SnapshotMeta


class RaftLog:
    __slots__ = ("entries", "snap")

    def __init__(self, snap: SnapshotMeta, entries: list[Entry]) -> None:
        self.snap = snap
        self.entries = entries  # entries[i].index == snap.index + 1 + i

    @property
    def first_index(self) -> int:
        return self.snap.index + 1

    @property
    def last_index(self) -> int:
        return self.snap.index + len(self.entries)

    @property
    def last_term(self) -> int:
        return self.entries[-1].term if self.entries else self.snap.term

    def term(self, index: int) -> int | None:
        """Term at ``index``; None when compacted away or beyond the end."""
        if index == self.snap.index:
            return self.snap.term
        off = index - self.snap.index - 1
        if 0 <= off < len(self.entries):
            return self.entries[off].term
        return None

    def entry(self, index: int) -> Entry:
        return self.entries[index - self.snap.index - 1]

    def matches(self, index: int, term: int) -> bool:
        return self.term(index) == term

    def slice(self, lo: int, hi: int, max_bytes: int) -> list[Entry]:
        """Entries [lo, hi), at least one, stopping once ``max_bytes`` is exceeded."""
        start = lo - self.snap.index - 1
        end = min(hi, self.last_index + 1) - self.snap.index - 1
        out: list[Entry] = []
        size = 0
        for e in self.entries[start:end]:
            size += len(e.data) + 24
            if out and size > max_bytes:
                break
            out.append(e)
        return out

    def append(self, entries: list[Entry]) -> None:
        """Append, first truncating any conflicting suffix from ``entries[0].index``."""
        if not entries:
            return
        cut = entries[0].index - self.snap.index - 1
        if cut < len(self.entries):
            del self.entries[cut:]
        self.entries.extend(entries)

    def find_conflict(self, entries: list[Entry]) -> int:
        """Position in ``entries`` of the first one not already in the log (len if none)."""
        for i, e in enumerate(entries):
            if e.index <= self.snap.index:
                continue
            if self.term(e.index) != e.term:
                return i
        return len(entries)

    def find_by_term(self, index: int, term: int) -> int:
        """Largest index <= ``index`` whose term is <= ``term`` (fast backtracking)."""
        index = min(index, self.last_index)
        while index > self.snap.index:
            t = self.term(index)
            if t is not None and t <= term:
                return index
            index -= 1
        return self.snap.index

    def compact(self, meta: SnapshotMeta) -> None:
        """Install ``meta`` as the new prefix; keep the suffix only if it agrees with it."""
        if self.term(meta.index) == meta.term and meta.index <= self.last_index:
            del self.entries[: meta.index - self.snap.index]
        else:
            self.entries = []
        self.snap = meta

    def up_to_date(self, last_index: int, last_term: int) -> bool:
        """Is a candidate's log at least as up to date as ours (Raft paper §5.4.1)?"""
        return (last_term, last_index) >= (self.last_term, self.last_index)
