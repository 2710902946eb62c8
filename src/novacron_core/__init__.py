"""NovaCron core: protocols (sans-IO), their asyncio runtime and their deterministic simulator."""

__version__ = "0.1.0"
