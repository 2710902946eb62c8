"""``novacron gateway``: the HTTP reverse proxy in front of the regions' nodes.

The decisions come from ``novacron_core.balancing``; this package performs them:
``downstream`` (clients), ``upstream`` (nodes), ``proxy`` (one request end to end),
``discovery`` (members and leaders), ``checks`` (probes), ``federation`` (what depends on
the federation's endpoints), ``config``, ``metrics``, ``server`` and ``cli``.
"""
