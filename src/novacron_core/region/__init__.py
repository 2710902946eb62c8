"""A region node: the one composite sans-IO machine each ``novacron node`` process runs."""
