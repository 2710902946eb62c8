"""NovaCron Kubernetes operator: CRD models, pure builders, thin kopf handlers."""

GROUP = "novacron.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
FIELD_MANAGER = "novacron-operator"
