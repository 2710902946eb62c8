"""The reconcile pass of each kind the operator watches."""

from __future__ import annotations

from novacron_operator.parents import reconcile_cluster, reconcile_federation
from novacron_operator.reconcile import reconcile_region

RECONCILERS = {
    "NovaCronRegion": reconcile_region,
    "NovaCronCluster": reconcile_cluster,
    "DWCPFederation": reconcile_federation,
}
