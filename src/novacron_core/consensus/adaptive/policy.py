"""The decision table: which protocol fits the conditions a group observes, and why.

Rules, first match wins (the design document's default policy, ARCHITECTURE.md and issue
19, with the signals it leaves open made explicit):

1. fewer than 3 members: **raft** (nothing for a leaderless or fast-path protocol to win);
2. quorum RTT < ``raft_rtt_ms`` and at most ``raft_max_regions`` regions: **raft**;
3. quorum RTT > ``eventual_rtt_ms`` and the data's policy allows it: **eventual**;
4. quorum RTT > ``eventual_rtt_ms``, or leader churn >= ``leader_churn`` (leader failures
   in the window: a leaderless protocol has no failover pause): **epaxos** when the
   conflict rate is below ``conflict_high``, else **multi-paxos**;
5. otherwise **multi-paxos** (the default).

The quorum RTT is what a leader-based commit costs at best now: for each live member, the
round trip to the nearest majority of the group (itself included) among the live members,
the smallest over members; unreachable without a live majority. A
pair never measured counts as unreachable. The conflict rate (fraction of writes that
interfere with a concurrent write to the same key) is only trusted once the write rate
reaches ``min_write_rate``; below it, rule 4 keeps the protocol in use (or multi-paxos).

Hysteresis: given the protocol in use (``incumbent``), every comparison that decides between
it and another moves its threshold by ``hysteresis`` (a fraction) in favour of the branch
that keeps it, so a measurement must cross the band, not only the line, to change the
answer; a comparison that does not involve the incumbent keeps its plain threshold.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

PROTOCOLS = ("raft", "multi-paxos", "epaxos", "eventual")


@dataclass(frozen=True)
class Thresholds:
    raft_rtt_ms: float = 50.0
    raft_max_regions: int = 3
    eventual_rtt_ms: float = 200.0
    conflict_high: float = 0.10
    leader_churn: float = 3.0  # leader changes per observation window
    min_write_rate: float = 1.0  # writes/s below which the conflict rate is not trusted
    hysteresis: float = 0.2  # the band around each threshold, as a fraction of it
    confirm_s: float = 30.0  # a new answer must hold this long before a switch
    dwell_s: float = 300.0  # at least this long between two switches

    def __post_init__(self) -> None:
        if not 0 < self.raft_rtt_ms < self.eventual_rtt_ms:
            raise ValueError(
                f"thresholds: raft_rtt_ms ({self.raft_rtt_ms}) must be above 0 and below "
                f"eventual_rtt_ms ({self.eventual_rtt_ms})"
            )
        if not 0 <= self.hysteresis < 1:
            raise ValueError(f"thresholds: hysteresis {self.hysteresis} must be in [0, 1)")
        if not 0 < self.conflict_high <= 1:
            raise ValueError(f"thresholds: conflict_high {self.conflict_high} must be in (0, 1]")
        if min(self.confirm_s, self.dwell_s, self.min_write_rate, self.leader_churn) < 0:
            raise ValueError("thresholds: confirm_s, dwell_s, min_write_rate, leader_churn >= 0")


@dataclass(frozen=True)
class Conditions:
    """What the group measured over the last observation window."""

    regions: Mapping[str, str]  # member -> its region
    rtt_ms: Mapping[tuple[str, str], float] = field(default_factory=dict)  # either order
    conflict_rate: float = 0.0  # fraction of writes interfering with a concurrent one
    write_rate: float = 0.0  # writes/s
    leader_changes: int = 0  # in the window
    suspected: frozenset[str] = frozenset()  # members suspected down
    eventual_allowed: bool = False  # the data's policy accepts eventual consistency

    @property
    def live(self) -> list[str]:
        return sorted(m for m in self.regions if m not in self.suspected)

    def rtt(self, a: str, b: str) -> float:
        if a == b:
            return 0.0
        got = [v for v in (self.rtt_ms.get((a, b)), self.rtt_ms.get((b, a))) if v is not None]
        return max(got) if got else math.inf

    def quorum_rtt(self) -> float:
        """The best live leader's round trip to a majority of all members (itself
        counted), reached through live members only: what a commit costs now."""
        majority = len(self.regions) // 2 + 1
        live = self.live
        if len(live) < majority:
            return math.inf
        return min(sorted(self.rtt(leader, m) for m in live)[majority - 1] for leader in live)

    @property
    def region_count(self) -> int:
        return len(set(self.regions.values()))


@dataclass(frozen=True)
class Decision:
    protocol: str
    rule: str  # which row of the table: small, near, wide-eventual, wide, churn, default
    reason: str


def _side(incumbent: str | None, true: set[str], false: set[str]) -> int:
    """+1: the comparison's true branch is where the incumbent is chosen; -1: its false
    branch is; 0: neither (no incumbent, or one this comparison does not decide between:
    a band there would only push the answer somewhere the incumbent is not either)."""
    if incumbent in true:
        return 1
    if incumbent in false:
        return -1
    return 0


def _below(value: float, bound: float, h: float, favour: int) -> bool:
    return value < bound * (1 + h * favour)


def _above(value: float, bound: float, h: float, favour: int) -> bool:
    return value > bound * (1 - h * favour)


def _ms(v: float) -> str:
    return "unmeasured" if math.isinf(v) else f"{v:.1f} ms"


def decide(c: Conditions, th: Thresholds | None = None, incumbent: str | None = None) -> Decision:
    th = th or Thresholds()
    h = th.hysteresis
    if len(c.regions) < 3:
        return Decision("raft", "small", f"raft: {len(c.regions)} member(s) < 3")
    q = c.quorum_rtt()
    regions = c.region_count
    if regions <= th.raft_max_regions and _below(
        q, th.raft_rtt_ms, h, _side(incumbent, {"raft"}, {"multi-paxos", "epaxos", "eventual"})
    ):
        return Decision(
            "raft",
            "near",
            f"raft: quorum RTT {_ms(q)} < {th.raft_rtt_ms:g} ms and {regions} region(s) "
            f"<= {th.raft_max_regions}",
        )
    paxos = {"multi-paxos", "epaxos"}
    wide_eventual = _above(q, th.eventual_rtt_ms, h, _side(incumbent, {"eventual"}, paxos))
    if wide_eventual and c.eventual_allowed:
        return Decision(
            "eventual",
            "wide-eventual",
            f"eventual: quorum RTT {_ms(q)} > {th.eventual_rtt_ms:g} ms and the data allows "
            "eventual consistency",
        )
    # between epaxos and multi-paxos, only epaxos needs a wide network or churn
    fast = _side(incumbent, {"epaxos"}, {"multi-paxos"})
    wide = _above(q, th.eventual_rtt_ms, h, fast)
    churn = c.leader_changes >= th.leader_churn * (1 - h * fast)
    if wide or churn:
        why = (
            f"quorum RTT {_ms(q)} > {th.eventual_rtt_ms:g} ms"
            if wide
            else f"{c.leader_changes} leader changes >= {th.leader_churn:g}"
        )
        if c.write_rate < th.min_write_rate:
            keep = incumbent if incumbent in ("epaxos", "multi-paxos") else "multi-paxos"
            return Decision(
                keep,
                "wide" if wide else "churn",
                f"{keep}: {why}; conflict rate not trusted at {c.write_rate:.1f} writes/s "
                f"< {th.min_write_rate:g}",
            )
        low = _below(c.conflict_rate, th.conflict_high, h, fast)
        pick = "epaxos" if low else "multi-paxos"
        sign = "<" if low else ">="
        return Decision(
            pick,
            "wide" if wide else "churn",
            f"{pick}: {why}; conflict rate {c.conflict_rate:.1%} {sign} {th.conflict_high:.0%}",
        )
    return Decision(
        "multi-paxos",
        "default",
        f"multi-paxos: quorum RTT {_ms(q)} between {th.raft_rtt_ms:g} and "
        f"{th.eventual_rtt_ms:g} ms or {regions} regions > {th.raft_max_regions}",
    )
