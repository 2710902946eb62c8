"""Sans-IO EPaxos (Egalitarian Paxos): leaderless, one round trip for commands that do not
interfere, dependency-ordered execution, and a corrected Explicit Prepare recovery.

``PROTOCOL`` is EPaxos as the node knows it (``consensus/interface.py``); ``novacron node
--protocol epaxos`` selects it through the registry. docs/consensus.md explains it."""

from novacron_core.consensus.epaxos.config import EPaxosConfig
from novacron_core.consensus.epaxos.messages import Command, InstanceState, interferes
from novacron_core.consensus.epaxos.protocol import PROTOCOL
from novacron_core.consensus.epaxos.recovery import CORRECTED, ORIGINAL
from novacron_core.consensus.epaxos.replica import EPaxosReplica
from novacron_core.consensus.epaxos.state import Executed
from novacron_core.consensus.epaxos.storage import MemoryStorage, Recovered

__all__ = [
    "CORRECTED",
    "ORIGINAL",
    "PROTOCOL",
    "Command",
    "EPaxosConfig",
    "EPaxosReplica",
    "Executed",
    "InstanceState",
    "MemoryStorage",
    "Recovered",
    "interferes",
]
