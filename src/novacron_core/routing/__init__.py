"""Routing for the DWCP agent: the live topology, path algorithms, QoS, reservations,
rerouting from precomputed backups, and Vivaldi coordinates. Sans-IO throughout: time and
measurements come in as arguments (the agent in ``runtime/agent`` does the I/O)."""

from novacron_core.routing.graph import Graph
from novacron_core.routing.qos import QoS
from novacron_core.routing.table import Route, Router, RouteTable, compute_routes
from novacron_core.routing.topology import Link, Member, Region, Topology
from novacron_core.routing.vivaldi import Coordinate, Coordinates, VivaldiClient

__all__ = [
    "Coordinate",
    "Coordinates",
    "Graph",
    "Link",
    "Member",
    "QoS",
    "Region",
    "Route",
    "RouteTable",
    "Router",
    "Topology",
    "VivaldiClient",
    "compute_routes",
]
