"""Thin fronts that let the benchmark load generator drive peer systems over HTTP/JSON."""
