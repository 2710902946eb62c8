"""Configurations (they take effect when appended), single-server member changes with
learners and addresses, leadership transfer, handing off after removing oneself."""

from __future__ import annotations

from typing import Any

from novacron_core.codec import decode, encode
from novacron_core.consensus.interface import (
    LEADER,
)
from novacron_core.consensus.raft.election import Election
from novacron_core.consensus.raft.messages import (
    BUSY,
    CONFIG,
    OK,
    REJECTED,
    ChangeMember,
    ConfigState,
    Entry,
    MemberAddress,
    Reply,
    TimeoutNow,
)
from novacron_core.consensus.raft.progress import Progress
from novacron_core.machine import NodeId


class Membership(Election):
    def _reload_conf(self) -> None:
        """Configurations take effect when appended (dissertation §4.1), so the latest config
        entry in the log rules, committed or not; recompute after a truncation."""
        self.conf, self.conf_index = self.log.snap.config, self.log.snap.index
        for e in reversed(self.log.entries):
            if e.kind == CONFIG:
                self.conf, self.conf_index = decode(e.data, ConfigState), e.index
                break
        self._sync_progress()

    def _note_appended(self, entries: list[Entry], truncated: bool) -> None:
        if truncated:
            self._reload_conf()
            return
        for e in entries:
            if e.kind == CONFIG:
                self.conf, self.conf_index = decode(e.data, ConfigState), e.index
                self._sync_progress()

    def _sync_progress(self) -> None:
        if self.role != LEADER:
            return
        members = set(self.conf.members()) - {self.id}
        for p in list(self.progress):
            if p not in members:
                del self.progress[p]
        for p in members:
            if p not in self.progress:
                # counted as heard now: it just voted for us, or was just added
                self.progress[p] = Progress(next=self.log.last_index + 1, heard_at=self.now)

    def _change_member(self, rid: Any, req: ChangeMember) -> None:
        if self._not_leader(rid):
            return
        # One change at a time, and only once our term's no-op committed: otherwise two
        # overlapping single-server changes could form disjoint majorities (Ongaro's fix).
        if self.conf_index > self.commit or self.commit < self.term_start:
            self.out.reply(rid, Reply(BUSY, leader=self.id, detail="a config change is pending"))
            return
        voters, learners = list(self.conf.voters), list(self.conf.learners)
        addrs = {a.node: a for a in self.conf.addresses}
        node, act = req.node, req.action
        adding = act in ("add_learner", "add_voter")
        if adding and req.peer and req.http:
            addrs[node] = MemberAddress(node, req.peer, req.http)
        if act == "add_learner" and node not in voters and node not in learners:
            learners.append(node)
        elif act in ("promote", "add_voter") and node not in voters:
            if node in learners:
                learners.remove(node)
            voters.append(node)
        elif act == "remove" and (node in voters or node in learners):
            if node in learners:
                learners.remove(node)
            else:
                voters.remove(node)
            if not voters:
                self.out.reply(rid, Reply(REJECTED, detail="cannot remove the last voter"))
                return
        # Otherwise the membership stays; an add may still move a member's address.
        members = set(voters) | set(learners)
        conf = ConfigState(
            tuple(sorted(voters)),
            tuple(sorted(learners)),
            tuple(addrs[n] for n in sorted(addrs) if n in members),  # removed: forgotten
        )
        if conf == self.conf:
            self.out.reply(rid, Reply(REJECTED, detail=f"{act} {node}: nothing to change"))
            return
        self._propose(rid, CONFIG, encode(conf))

    def _transfer(self, rid: Any, target: NodeId) -> None:
        if self._not_leader(rid):
            return
        if target == self.id:
            self.out.reply(rid, Reply(OK, leader=self.id))
            return
        if target not in self.conf.voters or target not in self.progress:
            self.out.reply(rid, Reply(REJECTED, detail=f"{target} is not a voter"))
            return
        self.transferee = target
        self.transfer_deadline = self.now + self.cfg.election_timeout
        pr = self.progress[target]
        if pr.match == self.log.last_index:
            self._send(target, TimeoutNow(self.term))
        else:
            # A probe at the follower's believed position: a lost append shows up as a
            # rejection, which restarts replication from where the target really is.
            self._send_append(target, heartbeat=True)
        self.out.reply(rid, Reply(OK, leader=self.id, detail="transfer started"))

    def _hand_off_after_removal(self) -> None:
        best = max(
            (p for p in self.conf.voters if p in self.progress),
            key=lambda p: self.progress[p].match,
            default=None,
        )
        if best is not None:
            self._send(best, TimeoutNow(self.term))
        self._become_follower(self.term, None)
