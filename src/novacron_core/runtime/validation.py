"""Request bodies validated strictly against pydantic models, and problems that name what
is wrong: not JSON, not an object (saying what it is instead), or the fields that fail."""

from __future__ import annotations

import json
from typing import TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from novacron_core.runtime.problems import Problem

M = TypeVar("M", bound=BaseModel)


async def validated(request: web.Request, model: type[M]) -> M:
    """The body as ``model``, strictly: a problem naming what is wrong otherwise."""
    raw = await request.read()
    try:
        return model.model_validate_json(raw, strict=True)
    except ValidationError as e:
        raise invalid(raw, e) from None


def invalid(raw: bytes, e: ValidationError) -> Problem:
    errors = e.errors()
    if not raw.strip():
        return Problem("invalid-body", "the body is empty: a JSON object is required")
    if any(err["type"] == "json_invalid" for err in errors):
        return Problem("invalid-body", f"the body is not valid JSON: {errors[0]['msg']}")
    if any(not err["loc"] for err in errors):  # the top level itself
        got = _json_kind(raw)
        return Problem("invalid-body", f"the body must be a JSON object, not {got}")
    fields = [
        {"field": ".".join(str(x) for x in err["loc"]), "message": err["msg"]} for err in errors
    ]
    detail = "; ".join(f"{f['field']}: {f['message']}" for f in fields)
    return Problem("invalid-field", detail, field=fields[0]["field"], errors=fields)


def _json_kind(raw: bytes) -> str:
    try:
        value = json.loads(raw)
    except ValueError:
        return "that"
    names = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number")
