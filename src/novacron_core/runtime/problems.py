"""Every error a node's HTTP APIs answer is an RFC 9457 problem (``application/problem+json``).

Besides the standard members (``type``, ``title``, ``status``, ``detail``) each problem says
what became of the request, in ``outcome``:

- ``not_applied``: it certainly did not take effect (refused, invalid, never handed to the
  group, or the group refused it). Retrying is safe; 429 and 503 say when (Retry-After).
- ``unknown``: it may or may not have taken effect (the leader was lost after the request
  reached it, a timeout). Only 504 (and a 500, which is a bug) say this. Retry with the same
  ``X-Client-Id``/``X-Request-Seq`` (exactly-once for KV writes), or read to find out.

``docs/api.md`` lists the problem types; :data:`TYPES` is that list in code.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from aiohttp import web

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
NOT_APPLIED, UNKNOWN = "not_applied", "unknown"
TYPE_BASE = "urn:novacron:problem:"

# type slug -> (title, status it comes with)
TYPES: dict[str, tuple[str, int]] = {
    "invalid-body": ("The request body is not what this operation takes", 400),
    "invalid-header": ("A request header is malformed", 400),
    "invalid-field": ("A field of the request is invalid", 422),
    "reserved-key": ("The key belongs to another API", 403),
    "not-found": ("No such resource", 404),
    "method-not-allowed": ("Method not allowed here", 405),
    "conflict": ("The request conflicts with the current state", 409),
    "corrupt-record": ("The stored record cannot be read", 409),
    "precondition-failed": ("If-Match does not match the current version", 412),
    "too-large": ("The request body is too large", 413),
    "wrong-region": ("The VM is written only in its home region: not applied", 421),
    "unsupported-media-type": ("This operation does not take that Content-Type", 415),
    "busy": ("Too many requests in flight: not applied, retry later", 429),
    "internal": ("Internal error: the outcome is unknown", 500),
    "unavailable": ("No leader can take the request now: not applied, retry later", 503),
    "outcome-unknown": ("The request may or may not have been applied", 504),
}


class Problem(Exception):
    """Raised anywhere under a handler: the middleware answers it as a problem response."""

    def __init__(
        self,
        kind: str,
        detail: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        title, default_status = TYPES[kind]
        self.kind, self.title, self.detail = kind, title, detail
        self.status = status or default_status
        self.retry_after, self.extra = retry_after, extra
        self.headers = dict(headers or {})

    @property
    def outcome(self) -> str:
        return UNKNOWN if self.kind in ("outcome-unknown", "internal") else NOT_APPLIED

    def body(self) -> dict[str, Any]:
        return {
            "type": TYPE_BASE + self.kind,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            "outcome": self.outcome,
            **self.extra,
        }

    def response(self) -> web.Response:
        headers = dict(self.headers)
        if self.retry_after is not None:
            headers["Retry-After"] = str(max(1, int(self.retry_after)))
        return web.Response(
            status=self.status,
            text=json.dumps(self.body()),
            content_type=PROBLEM_JSON,
            headers=headers,
        )


def problem(kind: str, detail: str, **kw: Any) -> web.Response:
    return Problem(kind, detail, **kw).response()


_HTTP_KINDS = {
    400: "invalid-body",
    404: "not-found",
    405: "method-not-allowed",
    413: "too-large",
    415: "unsupported-media-type",
}


def from_http_exception(exc: web.HTTPException, request: web.Request) -> web.Response:
    """aiohttp's own errors (no route, wrong method, body over the limit) as problems."""
    kind = _HTTP_KINDS.get(exc.status)
    if kind is None:
        kind = "internal" if exc.status >= 500 else "invalid-body"
    extra: dict[str, Any] = {}
    headers: dict[str, str] = {}
    if exc.status == 404:
        detail = f"no route for {request.method} {request.path}"
    elif exc.status == 405:
        allowed = sorted(getattr(exc, "allowed_methods", ()) or ())
        detail = f"{request.method} is not allowed on {request.path}; allowed: {', '.join(allowed)}"
        headers["Allow"] = ",".join(allowed)
        extra["allowed"] = allowed
    elif exc.status == 413:
        detail = f"the body is too large ({exc.text})"
    else:
        detail = exc.text or exc.reason
    return Problem(kind, detail, status=exc.status, headers=headers, **extra).response()


@web.middleware
async def problem_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    """Outermost: turns raised :class:`Problem`s, aiohttp's HTTP errors and any bug into
    problem responses, so no error leaves a node as plain text or HTML."""
    try:
        return await handler(request)  # type: ignore[no-any-return]
    except Problem as p:
        return p.response()
    except web.HTTPException as e:
        if e.status < 400:
            raise  # redirects and the like are answers, not errors
        return from_http_exception(e, request)
    except Exception:
        log.exception("%s %s failed", request.method, request.path)
        return problem(
            "internal",
            "internal error (logged on the node); a write may or may not have been applied",
        )
