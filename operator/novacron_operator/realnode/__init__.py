"""A real node (kubelet, containerd, CNI, kube-proxy, CoreDNS, NetworkPolicy enforcement,
volumes) for the local control plane: ``python -m novacron_operator.devcluster up
--real-node``. See docs/real-node.md."""

from novacron_operator.realnode.node import NODE_NAME, RealNode, project_images

__all__ = ["NODE_NAME", "RealNode", "project_images"]
