"""The wire client protocol: pipelined KV requests in msgpack frames over TCP, beside the
HTTP API (``frames.py``: the frames, sans-IO; ``client.py``: the Python client; the node's
side is ``runtime/wire_api.py``)."""
