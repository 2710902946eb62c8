"""The local federation behind ``novacron demo``: real node processes on 127.0.0.x."""
