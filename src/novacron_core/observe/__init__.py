"""Observability: metric conventions, tracing, the regional health score, SLOs and their
burn-rate alerts, anomaly detection, capacity forecasts, JSON logs and profiling.

See docs/observability.md.
"""
