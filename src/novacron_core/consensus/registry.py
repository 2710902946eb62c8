"""Find a consensus protocol by the name a region's ``protocol`` setting gives.

Each protocol is a package beside this module (``raft/``, later ``paxos/``, ``epaxos/``)
whose ``PROTOCOL`` object implements :class:`~novacron_core.consensus.interface.
ConsensusProtocol`; nothing else names a protocol, so adding one is adding a package.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from typing import cast

from novacron_core.consensus.interface import ConsensusProtocol


class UnknownProtocol(ValueError):
    """The configured protocol is not implemented by this build."""


def available() -> list[str]:
    """Names of the protocol packages this build has."""
    from novacron_core import consensus

    return sorted(m.name for m in pkgutil.iter_modules(consensus.__path__) if m.ispkg)


def protocol(name: str) -> ConsensusProtocol:
    if not re.fullmatch(r"[a-z][a-z0-9_]*", name) or name not in available():
        raise UnknownProtocol(
            f"protocol: {name!r} is not implemented by this node (available: "
            f"{', '.join(available())})"
        )
    module = importlib.import_module(f"{__package__}.{name}")
    return cast(ConsensusProtocol, module.PROTOCOL)
