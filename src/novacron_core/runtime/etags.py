"""Optimistic concurrency on VM records: the version as a strong ETag, If-Match checked
against it (RFC 9110 §13.1.1: strong comparison, so a weak tag never matches)."""

from __future__ import annotations

import re

from aiohttp import web

from novacron_core.runtime.problems import Problem
from novacron_core.vm import VMRecord


def etag(rec: VMRecord) -> str:
    return f'"{rec.version}"'


def vm_response(rec: VMRecord, status: int = 200) -> web.Response:
    return web.json_response(
        rec.model_dump(mode="json"), status=status, headers={"ETag": etag(rec)}
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


def check_version(wanted: set[int] | None, rec: VMRecord) -> None:
    if wanted is None or not wanted or rec.version in wanted:
        return
    raise Problem(
        "precondition-failed",
        f"VM {rec.id!r} is at version {rec.version} (ETag {etag(rec)}), If-Match wants "
        f"{', '.join(str(v) for v in sorted(wanted) if v >= 0) or 'a weak tag'}: not applied",
        headers={"ETag": etag(rec)},
        current_version=rec.version,
    )
