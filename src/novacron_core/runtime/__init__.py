"""The asyncio driver: durable storage, TCP transport, timers, HTTP APIs, the node process."""
