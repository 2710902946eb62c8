"""``kubectl novacron``: the kubectl plugin (console script ``kubectl-novacron``)."""
