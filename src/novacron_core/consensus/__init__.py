"""Consensus protocols, each a sans-IO :class:`~novacron_core.machine.Machine`."""
