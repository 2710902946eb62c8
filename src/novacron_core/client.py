"""A small synchronous client for the node HTTP API (the CLI and the demo use it).

It tries each given node URL in turn, follows a non-leader's redirect and a 421 that names
the VM's home region's node (``X-Novacron-Home``). Every failure says whether the request
certainly did not take effect (safe to retry) or may have:

- :class:`NodeUnreachable`: no node accepted a connection, so nothing was sent;
- :class:`OutcomeUnknown`: a write was sent and the connection broke (or timed out) before
  an answer: it is *not* sent again to the next node on its own, since it may have applied;
- :class:`ClientError`: the node answered with an error, an RFC 9457 problem whose
  ``outcome`` (:attr:`ClientError.applied`) says which (docs/api.md).
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

SAFE_METHODS = ("GET", "HEAD")


class ClientError(Exception):
    """The node answered with an error status."""

    def __init__(self, status: int, body: Any, url: str) -> None:
        self.status, self.body, self.url = status, body, url
        detail = body
        if isinstance(body, dict):
            detail = body.get("detail") or body.get("error") or body
        super().__init__(f"{url}: HTTP {status}: {detail} ({self.what_happened()})")

    @property
    def applied(self) -> bool | None:
        """False: certainly not applied (safe to retry); None: may or may not have been."""
        outcome = self.body.get("outcome") if isinstance(self.body, dict) else None
        if outcome == "not_applied":
            return False
        if outcome == "unknown" or self.status in (500, 504):
            return None
        return False if 400 <= self.status < 500 or self.status == 503 else None

    def what_happened(self) -> str:
        if self.applied is False:
            retry = self.status in (429, 503)
            return "not applied" + (": safe to retry" if retry else "")
        return "outcome unknown: it may have been applied; read it back before retrying"


class NodeUnreachable(Exception):
    """No node accepted a connection: nothing was sent."""


class OutcomeUnknown(Exception):
    """A write reached a node and no answer came back: it may or may not have applied."""


@dataclass
class Response:
    status: int
    body: Any
    url: str
    headers: dict[str, str]


class _NotSent(Exception):
    pass


class _Lost(Exception):
    pass


class NodeClient:
    def __init__(self, urls: Sequence[str] | str, timeout: float = 3.0) -> None:
        self.urls = [urls] if isinstance(urls, str) else list(urls)
        if not self.urls:
            raise ValueError("give at least one node URL, e.g. http://127.0.1.1:8080")
        self.urls = [u.rstrip("/") for u in self.urls]
        self.timeout = timeout

    def request(self, method: str, path: str, body: Any = None, max_hops: int = 3) -> Response:
        errors: list[str] = []
        for base in self.urls:
            url = base + path
            for _ in range(max_hops):
                try:
                    resp = self._once(method, url, body)
                except _NotSent as e:
                    errors.append(f"{url}: {e}")
                    break  # never sent: the next node may take it
                except _Lost as e:
                    if method in SAFE_METHODS:
                        errors.append(f"{url}: {e}")
                        break  # a read: ask the next node
                    raise OutcomeUnknown(
                        f"{method} {url}: the connection broke after the request was sent "
                        f"({e}): it may or may not have been applied; read it back (e.g. "
                        "`novacron vms get ID`) before retrying"
                    ) from None
                location = resp.headers.get("Location") or resp.headers.get("location")
                if resp.status in (307, 308) and location:
                    url = location if "://" in location else base + location
                    continue
                home = resp.headers.get("X-Novacron-Home") or resp.headers.get("x-novacron-home")
                if resp.status == 421 and home:
                    # the VM is written only in its home region: ask a node there
                    url = home.rstrip("/") + path
                    continue
                return resp
        raise NodeUnreachable(
            "no node answered (" + "; ".join(errors) + "); nothing was applied. Is the "
            "federation running? Start one with `novacron demo --interactive`, or pass --url "
            "with a node's address."
        )

    def _once(self, method: str, url: str, body: Any) -> Response:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise _NotSent(f"not an http(s) URL: {url!r}")
        conn = (
            http.client.HTTPSConnection(parts.hostname, parts.port, timeout=self.timeout)
            if parts.scheme == "https"
            else http.client.HTTPConnection(parts.hostname, parts.port, timeout=self.timeout)
        )
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if data is not None else {}
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        try:
            try:
                conn.connect()
            except OSError as e:
                raise _NotSent(str(getattr(e, "strerror", None) or e)) from None
            try:
                conn.request(method, target, body=data, headers=headers)
                r = conn.getresponse()
                raw, status, got = r.read(), r.status, dict(r.getheaders())
            except (OSError, http.client.HTTPException) as e:
                raise _Lost(f"{type(e).__name__}: {e}".rstrip(": ")) from None
        finally:
            conn.close()
        try:
            parsed: Any = json.loads(raw) if raw else None
        except ValueError:
            parsed = raw.decode(errors="replace")
        return Response(status, parsed, url, got)

    def call(self, method: str, path: str, body: Any = None) -> Any:
        resp = self.request(method, path, body)
        if resp.status >= 400:
            raise ClientError(resp.status, resp.body, resp.url)
        return resp.body
