"""NovaCron benchmarks: each prints our figure beside a peer measured in the same run.

``python -m benchmarks NAME [--quick]``; ``make bench`` runs them all. Results also go to
``benchmarks/results/NAME.json`` (git-ignored).
"""
