"""Adaptive selection of a group's consensus protocol from what is measured (sans-IO).

``policy.decide`` is the decision table (docs/consensus.md, "Adaptive selection"): from the
members' RTT matrix, their regions, the conflict rate across keys, the write rate, leader
churn and whether the data's policy allows eventual consistency, it names a protocol and
says why. ``selector.Selector`` applies it over time with hysteresis (a band around every
threshold, favouring the protocol in use), a confirmation period and a minimum dwell time,
so noisy measurements near a threshold do not flap.

This package recommends; it does not switch a running group. The agreed live switch (a
reconfiguration committed in the old protocol naming the last slot it owns) is not built,
so nothing in the deployed path changes protocol on its advice.

No ``PROTOCOL`` here: the registry (``consensus/registry.py``) lists protocols only.
"""

from novacron_core.consensus.adaptive.policy import (
    PROTOCOLS,
    Conditions,
    Decision,
    Thresholds,
    decide,
)
from novacron_core.consensus.adaptive.selector import Choice, Selector

__all__ = [
    "PROTOCOLS",
    "Choice",
    "Conditions",
    "Decision",
    "Selector",
    "Thresholds",
    "decide",
]
