"""Volume resize, the CloudNativePG way: a StatefulSet's volumeClaimTemplates cannot change
(the API server answers 422 to any edit), so a larger ``storage.size`` is applied by

1. expanding each existing PersistentVolumeClaim (the API server refuses this unless the
   claim's StorageClass has ``allowVolumeExpansion: true``), then
2. deleting the StatefulSet with ``propagationPolicy: Orphan`` (its pods and claims stay,
   the group keeps serving) once no rollout or scaling is in flight, and
3. re-creating it on the next pass with the new size; it adopts the running pods, whose
   template is unchanged, so none restarts.

Until then the StatefulSet is applied with its live claim size, so nothing else waits on the
resize, and the condition VolumesResized says where it stands or why it cannot happen (a
claim cannot shrink; a StorageClass that does not allow expansion), with a Warning Event.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from novacron_operator.builders.common import Owner, selector_labels
from novacron_operator.kube import ApiError, Kube, path
from novacron_operator.status import Cond, no, ok

Obj = dict[str, Any]
UNITS = {
    "": 1,
    "m": 0.001,
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
}
_QUANTITY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(m|k|Ki|Mi|Gi|Ti|M|G|T)?$")


def quantity(text: str) -> float:
    """Bytes of a Kubernetes quantity, in the forms the CRD's pattern admits."""
    found = _QUANTITY.match(text.strip())
    if found is None:
        raise ValueError(f"not a quantity: {text!r}")
    return float(found.group(1)) * UNITS[found.group(2) or ""]


def claim_size(sts: Obj | None) -> str | None:
    for tmpl in ((sts or {}).get("spec") or {}).get("volumeClaimTemplates") or []:
        if (tmpl.get("metadata") or {}).get("name") == "data":
            size = ((tmpl.get("spec") or {}).get("resources") or {}).get("requests", {})
            value = size.get("storage")
            return str(value) if value is not None else None
    return None


@dataclass(frozen=True)
class Resize:
    keep: str | None  # the claim size to apply in the StatefulSet (None: the spec's)
    condition: Cond
    skip_statefulset: bool = False  # deleted (orphaning) this pass: re-created next pass
    again: bool = False  # look again soon


def _requested(pvc: Obj) -> str:
    return str(((pvc.get("spec") or {}).get("resources") or {}).get("requests", {}).get("storage"))


async def resize(kube: Kube, owner: Owner, live: Obj | None, want: str, steady: bool) -> Resize:
    """One step of a resize of the region's volumes to ``want``; ``steady``: no rollout or
    scaling in flight (the StatefulSet may then be re-created)."""
    have = claim_size(live)
    if live is None or have is None or quantity(have) == quantity(want):
        return Resize(None, ok("VolumesResized", "AsSpecified", f"volumes are {want}"))
    if live["metadata"].get("deletionTimestamp"):
        msg = f"re-creating the StatefulSet with volumes of {want} (its pods keep running)"
        return Resize(have, no("VolumesResized", "Resizing", msg), True, True)
    if quantity(want) < quantity(have):
        msg = (
            f"spec storage.size {want} is smaller than the volumes' {have}: a "
            f"PersistentVolumeClaim cannot shrink. The volumes stay at {have}; set "
            f"storage.size back to {have} or more"
        )
        return Resize(have, no("VolumesResized", "ShrinkUnsupported", msg))
    sel = ",".join(f"{k}={v}" for k, v in selector_labels(owner, "node").items())
    claims = await kube.list("PersistentVolumeClaim", owner.namespace, sel)
    for pvc in sorted(claims, key=lambda c: str(c["metadata"]["name"])):
        if quantity(_requested(pvc)) >= quantity(want):
            continue
        name = pvc["metadata"]["name"]
        try:
            await kube.request(
                "PATCH",
                path("PersistentVolumeClaim", owner.namespace, name),
                {"spec": {"resources": {"requests": {"storage": want}}}},
                "application/merge-patch+json",
            )
        except ApiError as e:
            if e.status not in (403, 422):
                raise
            msg = (
                f"the API server refused to expand PersistentVolumeClaim {name} to {want}: "
                f"{e.message}. The volumes stay at {have}: use a StorageClass with "
                f"allowVolumeExpansion: true, or set storage.size back to {have}"
            )
            return Resize(have, no("VolumesResized", "ExpansionRefused", msg))
    if not steady:
        msg = (
            f"claims expanded to {want}; the StatefulSet is re-created with the new size "
            "once the rollout or scaling in progress ends"
        )
        return Resize(have, no("VolumesResized", "WaitingForRollout", msg), again=True)
    await kube.delete("StatefulSet", owner.namespace, owner.name, propagation="Orphan")
    msg = f"claims expanded to {want}; re-creating the StatefulSet (its pods keep running)"
    return Resize(have, no("VolumesResized", "Resizing", msg), True, True)
