"""Optimistic concurrency on VM records: the version as a strong ETag, If-Match checked
against it (RFC 9110 §13.1.1: strong comparison, so a weak tag never matches)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from novacron_core.runtime.problems import Problem


def version_of(rec: Mapping[str, Any]) -> int:
    v = rec.get("version")
    return v if type(v) is int else 0


def etag(rec: Mapping[str, Any]) -> str:
    return f'"{version_of(rec)}"'


def vm_response(
    rec: Mapping[str, Any], status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    """A VM record (as the API shows it) with its version as the ETag."""
    return web.json_response(
        dict(rec), status=status, headers={**(headers or {}), "ETag": etag(rec)}
    )


_TAG = r'(?:W/"[0-9]+"|"[0-9]+"|[0-9]+)'
# What If-Match takes: *, or entity tags (a bare 3 too: clients forget the quotes).
IF_MATCH = rf"^\s*(?:\*|{_TAG}(?:\s*,\s*{_TAG})*)\s*$"
_IF_MATCH = re.compile(IF_MATCH)


def if_match(request: web.Request) -> set[int] | None:
    """The versions ``If-Match`` accepts (an empty set: ``*``, any), None without one. Weak
    tags never match (If-Match compares strongly, RFC 9110 §13.1.1)."""
    raw = request.headers.get("If-Match")
    if raw is None:
        return None
    if not _IF_MATCH.match(raw):
        raise Problem(
            "invalid-header",
            f'If-Match: entity tags like "3" (a VM\'s version, as its ETag says) or *, '
            f"not {raw[:60]!r}",
            header="If-Match",
        )
    versions: set[int] = set()
    for tag in (t.strip() for t in raw.split(",")):
        if tag == "*":
            return set()
        if tag.startswith("W/"):
            versions.add(-1)  # present, matches nothing
        else:
            versions.add(int(tag.strip('"')))
    return versions


def check_version(wanted: set[int] | None, rec: Mapping[str, Any]) -> None:
    version = version_of(rec)
    if wanted is None or not wanted or version in wanted:
        return
    raise Problem(
        "precondition-failed",
        f"VM {rec.get('id')!r} is at version {version} (ETag {etag(rec)}), If-Match wants "
        f"{', '.join(str(v) for v in sorted(wanted) if v >= 0) or 'a weak tag'}: not applied",
        headers={"ETag": etag(rec)},
        current_version=version,
    )
