"""What counts as drift for the skip-unchanged cache: everything a person can edit, not the
status or bookkeeping that Kubernetes' own controllers write on every object."""

from __future__ import annotations

import copy
from typing import Any

from novacron_operator.kube import fingerprint


def _deployment() -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "gw", "namespace": "n", "resourceVersion": "7",
                     "labels": {"app": "gw"}, "annotations": {"novacron.io/hash": "a"}},
        "spec": {"replicas": 2},
        "status": {"readyReplicas": 0},
    }  # fmt: skip


def test_status_resource_version_and_controller_annotations_are_not_drift() -> None:
    before = _deployment()
    after = copy.deepcopy(before)
    after["status"] = {"readyReplicas": 2}
    after["metadata"]["resourceVersion"] = "9"
    after["metadata"]["managedFields"] = [{"manager": "kube-controller-manager"}]
    after["metadata"]["annotations"]["deployment.kubernetes.io/revision"] = "1"
    assert fingerprint(after) == fingerprint(before)


def test_a_hand_edit_of_spec_labels_or_our_annotations_is_drift() -> None:
    base = fingerprint(_deployment())
    for path, value in ((("spec", "replicas"), 5), (("metadata", "labels"), {}),
                        (("metadata", "annotations"), {"novacron.io/hash": "b"})):  # fmt: skip
        edited = _deployment()
        edited[path[0]][path[1]] = value
        assert fingerprint(edited) != base, path
