"""Tunnels between regions on real interfaces (VXLAN, GRE, WireGuard; IPsec as configuration
only): the specs, the manager that reconciles them over netlink, and userspace fallbacks."""
