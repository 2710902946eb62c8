"""CLI alias: ``python e2e/k8s/cluster.py up|down`` (the code is novacron_operator.devcluster)."""

from __future__ import annotations

import sys

from novacron_operator.devcluster import main

if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
