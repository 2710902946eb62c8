"""Which consensus protocol a region's nodes run, and what the region says about it.

A group's log is written in its protocol's format (each protocol keeps its own directory in
the node's data dir), so a node restarted with another protocol would not find its state:
the protocol is fixed when the region is created. It is recorded like the bootstrap
replicas, on the region and on its StatefulSet (either one is enough), and shown as
``status.protocol``. An edit of ``spec.protocol`` (or of the cluster's
``regionDefaults.protocol`` a region inherits) is refused with ``ProtocolSupported=False``
until the agreed live switch exists; the CRD refuses a direct edit at admission.
``adaptive`` needs that switch too: the CRD refuses it, and a region that still says it
(written before the rule) keeps the protocol it runs, or, when new, is not deployed.
"""

from __future__ import annotations

from typing import Any

from novacron_operator.builders.region import PROTOCOL_ANNOTATION
from novacron_operator.kube import Kube
from novacron_operator.reconcile import annotate
from novacron_operator.sequencer import FIXED_MEMBERSHIP
from novacron_operator.status import Cond, no, ok

Obj = dict[str, Any]
# what the nodes of an operator that rendered no protocol ran: the node's default
LEGACY = "raft"
NAMES = {"raft": "Raft", "multi-paxos": "MultiPaxos", "epaxos": "EPaxos", "eventual": "Eventual"}


def _recorded(obj: Obj | None) -> str | None:
    annotations = ((obj or {}).get("metadata") or {}).get("annotations") or {}
    value = annotations.get(PROTOCOL_ANNOTATION)
    return value if value in NAMES else None


def bootstrap_protocol(body: Obj, asked: str, sts: Obj | None) -> tuple[str | None, bool]:
    """The protocol the group was created with, and whether the region still needs it
    recorded (``record_protocol``, sent beside the children's applies). A StatefulSet that
    records none was created by an operator that rendered no protocol: its nodes run raft.
    None: a new region asking for a protocol that cannot run (``adaptive``)."""
    recorded = _recorded(body)
    if recorded is not None:
        return recorded, False
    if sts is not None:
        return _recorded(sts) or LEGACY, True
    if asked in NAMES:
        return asked, True
    return None, False


async def record_protocol(kube: Kube, body: Obj, protocol: str) -> None:
    await annotate(kube, body, {PROTOCOL_ANNOTATION: protocol})


def protocol_condition(asked: str, running: str | None) -> Cond:
    """``ProtocolSupported``: True when the nodes run what the spec asks."""
    if running is None:
        return no(
            "ProtocolSupported",
            "AdaptiveNotAvailable",
            f"spec.protocol {asked}: it needs the agreed live switch between protocols, which "
            "is not built; nothing is deployed: set spec.protocol to raft, multi-paxos, "
            "epaxos or eventual",
        )
    if asked == running:
        fixed = (
            "; its membership is fixed at creation (the protocol has no membership change)"
            if running in FIXED_MEMBERSHIP
            else ""
        )
        return ok("ProtocolSupported", NAMES[running], f"the nodes run {running}, as asked{fixed}")
    if asked == "adaptive":
        return no(
            "ProtocolSupported",
            "AdaptiveNotAvailable",
            f"spec.protocol adaptive: it needs the agreed live switch between protocols, which "
            f"is not built; the nodes keep running {running}, the protocol the group was "
            f"created with (set spec.protocol to {running} to say so)",
        )
    return no(
        "ProtocolSupported",
        "SwitchNotAvailable",
        f"spec.protocol {asked}: the group was created with {running} and its log is "
        f"{running}'s; switching a running group needs the agreed live switch, which is not "
        f"built, so the nodes keep running {running} (status.protocol). Set it back to "
        f"{running}, or create a new region for {asked}",
    )
