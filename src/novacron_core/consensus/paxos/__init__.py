"""Sans-IO Multi-Paxos: a stable leader running phase 1 once per ballot and phase 2 per
slot (pipelined), flexible quorums (``consensus/quorum.py``), catch-up of lagging members,
snapshots, membership changes as stoppable instances, leadership transfer.

``PROTOCOL`` is Multi-Paxos as the node knows it (``consensus/interface.py``); everything
else here is for its own code and tests."""

from novacron_core.consensus.paxos.config import PaxosConfig
from novacron_core.consensus.paxos.messages import Ballot, Slot, SnapshotMeta
from novacron_core.consensus.paxos.node import PaxosNode
from novacron_core.consensus.paxos.protocol import PROTOCOL
from novacron_core.consensus.paxos.storage import MemoryStorage, Recovered

__all__ = [
    "PROTOCOL",
    "Ballot",
    "MemoryStorage",
    "PaxosConfig",
    "PaxosNode",
    "Recovered",
    "Slot",
    "SnapshotMeta",
]
