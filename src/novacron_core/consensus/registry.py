"""Find a consensus protocol by the name a region's ``protocol`` setting gives.

Each protocol is a package beside this module (``raft/``, ``paxos/``, ``eventual/``, later
``epaxos/``) whose ``PROTOCOL`` object implements :class:`~novacron_core.consensus.
interface.ConsensusProtocol` and says its setting name (``PROTOCOL.name``: "raft",
"multi-paxos", ...); nothing else names a protocol, so adding one is adding a package.
A package without ``PROTOCOL`` (a helper such as a selection policy) is not a protocol.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
from typing import cast

from novacron_core.consensus.interface import ConsensusProtocol


class UnknownProtocol(ValueError):
    """The configured protocol is not implemented by this build."""


@functools.cache
def _table() -> dict[str, str]:
    """Setting name -> package name, for every protocol package this build has."""
    from novacron_core import consensus

    out: dict[str, str] = {}
    for m in pkgutil.iter_modules(consensus.__path__):
        if not m.ispkg:
            continue
        module = importlib.import_module(f"{__package__}.{m.name}")
        proto = getattr(module, "PROTOCOL", None)
        if proto is not None:
            out[str(proto.name)] = m.name
    return out


def available() -> list[str]:
    """The protocol names this build implements (the values ``protocol`` accepts)."""
    return sorted(_table())


def protocol(name: str) -> ConsensusProtocol:
    package = _table().get(name)
    if package is None:
        raise UnknownProtocol(
            f"protocol: {name!r} is not implemented by this node (available: "
            f"{', '.join(available())})"
        )
    module = importlib.import_module(f"{__package__}.{package}")
    return cast(ConsensusProtocol, module.PROTOCOL)
