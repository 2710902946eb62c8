"""Pure builders: a custom resource in, the Kubernetes objects it should own out.

No I/O here: the handlers read the world, call these, and apply the result, so every
manifest is testable as data (golden files + kubernetes-validate).
"""

from novacron_operator.builders.cluster import build_ca_secret, build_cluster
from novacron_operator.builders.common import Owner
from novacron_operator.builders.federation import build_federation
from novacron_operator.builders.region import build_region

__all__ = ["Owner", "build_ca_secret", "build_cluster", "build_federation", "build_region"]
