"""The decision table applied over time, so that it does not flap.

Three guards, each answering a different kind of noise:

* hysteresis (``Thresholds.hysteresis``, in ``policy.decide``): a measurement wandering
  around a threshold does not change the answer unless it leaves the band;
* confirmation (``confirm_s``): a new answer must hold, observation after observation, this
  long before it is taken (one bad window does not switch);
* dwell (``dwell_s``): at least this long between two switches, whatever the inputs.

A switch also needs a live majority (a switch is agreed by the group; with most members
suspected down it could not be, and the measurements are the failure's, not the network's).

Sans-IO: the caller passes the time (seconds, any monotonic origin) with each observation.
"""

from __future__ import annotations

from dataclasses import dataclass

from novacron_core.consensus.adaptive.policy import Conditions, Decision, Thresholds, decide


@dataclass(frozen=True)
class Choice:
    protocol: str  # the protocol to run now
    decision: Decision  # what the table says of this observation (biased by ``protocol``)
    reason: str  # why ``protocol``: the decision's reason, or why it is held back
    switched: bool  # this observation changed ``protocol``
    switches: int  # switches so far


class Selector:
    def __init__(self, initial: str, now: float, thresholds: Thresholds | None = None) -> None:
        self.th = thresholds or Thresholds()
        self.protocol = initial
        self.switches = 0
        self.last_switch = now
        self._pending: str | None = None
        self._pending_since = now
        self.last: Choice | None = None

    def observe(self, now: float, c: Conditions) -> Choice:
        d = decide(c, self.th, self.protocol)
        choice = self._step(now, c, d)
        self.last = choice
        return choice

    def _hold(self, d: Decision, why: str) -> Choice:
        return Choice(self.protocol, d, f"{self.protocol} kept: {why}", False, self.switches)

    def _step(self, now: float, c: Conditions, d: Decision) -> Choice:
        if d.protocol == self.protocol:
            self._pending = None
            return Choice(self.protocol, d, d.reason, False, self.switches)
        if self._pending != d.protocol:
            self._pending, self._pending_since = d.protocol, now
        majority = len(c.regions) // 2 + 1
        if len(c.live) < majority:
            return self._hold(
                d, f"{d.reason}, but only {len(c.live)} of {len(c.regions)} members are live"
            )
        since_switch = now - self.last_switch
        if since_switch < self.th.dwell_s:
            return self._hold(
                d,
                f"{d.reason}, but the last switch was {since_switch:.0f} s ago "
                f"(dwell {self.th.dwell_s:g} s)",
            )
        held = now - self._pending_since
        if held < self.th.confirm_s:
            return self._hold(
                d, f"{d.reason}, for {held:.0f} s of the {self.th.confirm_s:g} s it must hold"
            )
        self.protocol = d.protocol
        self.switches += 1
        self.last_switch = now
        self._pending = None
        return Choice(self.protocol, d, d.reason, True, self.switches)

    def status(self) -> dict[str, object]:
        """For a status document: the protocol chosen, why, and how often it changed."""
        last = self.last
        return {
            "protocol": self.protocol,
            "reason": last.reason if last else "no observation yet",
            "rule": last.decision.rule if last else None,
            "switches": self.switches,
        }
