"""A small synchronous client for the node HTTP API (the CLI and the demo use it).

It tries each given node URL in turn, follows a non-leader's redirect and a 421 that names
the VM's home region's node, and turns transport failures into :class:`NodeUnreachable`
with a message that says what to check.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


class ClientError(Exception):
    """The node answered with an error status."""

    def __init__(self, status: int, body: Any, url: str) -> None:
        self.status, self.body, self.url = status, body, url
        detail = body.get("error", body) if isinstance(body, dict) else body
        super().__init__(f"{url}: HTTP {status}: {detail}")


class NodeUnreachable(Exception):
    pass


@dataclass
class Response:
    status: int
    body: Any
    url: str
    headers: dict[str, str]


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # we follow redirects ourselves, keeping method and body


_opener = urllib.request.build_opener(_NoRedirect)


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
                except (urllib.error.URLError, OSError, TimeoutError) as e:
                    errors.append(f"{url}: {getattr(e, 'reason', e)}")
                    break
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
            "no node answered (" + "; ".join(errors) + "). Is the federation running? "
            "Start one with `novacron demo --interactive`, or pass --url with a node's address."
        )

    def _once(self, method: str, url: str, body: Any) -> Response:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(url, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with _opener.open(req, timeout=self.timeout) as r:
                raw, status, headers = r.read(), r.status, dict(r.headers)
        except urllib.error.HTTPError as e:
            raw, status, headers = e.read(), e.code, dict(e.headers or {})
        try:
            parsed: Any = json.loads(raw) if raw else None
        except ValueError:
            parsed = raw.decode(errors="replace")
        return Response(status, parsed, url, headers)

    def call(self, method: str, path: str, body: Any = None) -> Any:
        resp = self.request(method, path, body)
        if resp.status >= 400:
            raise ClientError(resp.status, resp.body, resp.url)
        return resp.body
