"""A small async Kubernetes client, one seam per module: ``kinds`` (the kinds, their REST
paths, the API server's error), ``config`` (kubeconfig or the pod's ServiceAccount),
``informer`` (LIST+WATCH caches, the drift fingerprint), ``client`` (the verbs,
server-side apply, Events). Import from here."""

from novacron_operator.kube.client import Kube
from novacron_operator.kube.config import SA_DIR, Config, load_config
from novacron_operator.kube.informer import Informer, fingerprint
from novacron_operator.kube.kinds import KINDS, OPTIONAL_OWNED, OWNED, ApiError, path

__all__ = [
    "KINDS",
    "OPTIONAL_OWNED",
    "OWNED",
    "SA_DIR",
    "ApiError",
    "Config",
    "Informer",
    "Kube",
    "fingerprint",
    "load_config",
    "path",
]
