"""Which kind of request this is, from its method and path (pure; no I/O).

The kind decides where it may go:

- ``vm``: names a VM (``/v1/vms/{id}...``): its home region's group holds it, so the
  request goes there (writes strictly; reads fall back to another region's replica when
  the home has no available node).
- ``vm_create`` (``POST /v1/vms``): any region may home a new VM: the nearest healthy
  one, spilling over to the next by the pool's rules.
- ``region`` (``/v1/kv``, ``/v1/cas``, ``GET /v1/vms``, ``/v1/cluster`` and any other
  ``/v1/`` path): the data of one region's group, so the request stays in one region (the
  client's ``X-Novacron-Region``, else the gateway's own) and never silently reads or
  writes another region's copy.
- ``admin`` (membership and leader transfer): not exposed through the gateway unless
  configured; the operator talks to the nodes directly.
- ``gateway``: the gateway's own endpoints; ``unknown``: 404.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
GATEWAY_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/v1/backends"})


@dataclass(frozen=True, slots=True)
class Route:
    kind: str
    write: bool
    vm_id: str | None = None
    # the node deduplicates a resend carrying X-Client-Id and X-Request-Seq (KV writes)
    session_aware: bool = False


CACHE_SIZE = 4096  # distinct (method, path) pairs remembered; VM ids make paths unbounded
_cache: dict[tuple[str, str], Route] = {}


def classify(method: str, path: str) -> Route:
    """The route of a request (remembered: the same few paths come again and again, and a
    frozen Route costs more to build than to look up)."""
    key = (method, path)
    route = _cache.get(key)
    if route is None:
        if len(_cache) >= CACHE_SIZE:
            _cache.clear()
        route = _cache[key] = _classify(method, path)
    return route


def _classify(method: str, path: str) -> Route:
    write = method not in SAFE_METHODS
    if path in GATEWAY_PATHS:
        return Route("gateway", write)
    if path.startswith("/v1/vms"):
        rest = path[len("/v1/vms") :]
        if rest in ("", "/"):
            return Route("vm_create" if method == "POST" else "region", write)
        if rest.startswith("/"):
            vm_id = unquote(rest[1:].split("/", 1)[0])
            if vm_id:
                return Route("vm", write, vm_id)
        return Route("unknown", write)
    if path.startswith(("/v1/kv/", "/v1/cas/")):
        return Route("region", write, session_aware=True)
    if path in ("/v1/cluster/members", "/v1/cluster/transfer"):
        return Route("admin", write)
    if path.startswith("/v1/"):
        return Route("region", write)
    return Route("unknown", write)


def resend_safe(method: str, route: Route, client_id: bytes | None, seq: bytes | None) -> bool:
    """May a request that possibly reached a backend be sent again? Only when doing it
    twice cannot differ from doing it once: safe methods, and writes the node
    deduplicates by session (it answers a repeat with the first outcome). PUT and DELETE
    are idempotent by RFC 9110, yet a repeated DELETE answers 404 and a repeated VM
    update bumps the version again: the client would be told something untrue."""
    if method in SAFE_METHODS:
        return True
    return route.session_aware and bool(client_id) and bool(seq)
