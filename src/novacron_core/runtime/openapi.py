"""The OpenAPI 3.1 document a node serves at ``GET /openapi.json``.

Request and response bodies come from the pydantic models the handlers validate with
(``runtime/api_models.py``, ``vm.py``), so the document cannot drift from what is enforced;
the operations table below adds what pydantic does not know (paths, headers, statuses).
``tests/runtime/test_openapi.py`` runs schemathesis against a live node with it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from novacron_core.runtime import api_models as m
from novacron_core.runtime.etags import IF_MATCH
from novacron_core.runtime.http_api import MAX_CLIENT_ID, MAX_KEY_CHARS
from novacron_core.runtime.problems import PROBLEM_JSON, TYPES
from novacron_core.vm import (
    VM_ID,
    ConflictResolve,
    LifecycleChange,
    PlacementChange,
    PowerChange,
    ReaddressChange,
    VMCreate,
    VMPatch,
    VMSpec,
    VMView,
)

SEQ_MAX = (1 << 64) - 1
REF = "#/components/schemas/{model}"
TIME = {"type": "string", "format": "date-time"}


@dataclass
class Op:
    method: str
    path: str
    summary: str
    ok: int = 200
    response: type[BaseModel] | str | None = None  # a model, or a media type (raw bytes)
    body: type[BaseModel] | str | None = None
    params: list[str] = field(default_factory=list)  # names in PARAMETERS
    errors: tuple[int, ...] = ()
    tags: tuple[str, ...] = ()
    etag: bool = False
    description: str = ""
    body_required: bool = True


WRITE_ERRORS = (400, 413, 422, 429, 503, 504)
READ_ERRORS = (429, 503)
# a VM write also answers 404, 409 (exists, illegal transition, corrupt, kept changing), 412
# (If-Match) and 421 (written only in its home region: X-Novacron-Home says where)
VM_WRITE_ERRORS = (*WRITE_ERRORS, 404, 409, 412, 421)


def vm_write(method: str, path: str, summary: str, **kw: Any) -> Op:
    """A write of one VM: answers the record (with its ETag), honours If-Match."""
    return Op(
        method,
        path,
        summary,
        response=VMView,
        params=["id", "if_match"],
        errors=VM_WRITE_ERRORS,
        tags=("vms",),
        etag=True,
        **kw,
    )


OPS = [
    Op("get", "/healthz", "Liveness: the process serves HTTP", response=m.Ok, tags=("admin",)),
    Op(
        "get",
        "/readyz",
        "Readiness: a member, caught up with a known leader, not rejoining",
        response=m.Readiness,
        errors=(503,),
        tags=("admin",),
    ),
    Op("get", "/metrics", "Prometheus metrics", response="text/plain", tags=("admin",)),
    Op("get", "/openapi.json", "This document", response="application/json", tags=("admin",)),
    Op(
        "get",
        "/v1/cluster",
        "This node's view of its consensus group, and what it recovered from disk at start",
        response=m.ClusterStatus,
        tags=("admin",),
    ),
    Op(
        "post",
        "/v1/cluster/members",
        "Change membership (one change at a time, at the leader)",
        response=m.ClusterStatus,
        body=m.MemberChange,
        errors=(*WRITE_ERRORS, 409),
        tags=("admin",),
    ),
    Op(
        "post",
        "/v1/cluster/transfer",
        "Hand leadership to another voter",
        response=m.TransferResult,
        body=m.TransferRequest,
        errors=(*WRITE_ERRORS, 409),
        tags=("admin",),
    ),
    Op(
        "put",
        "/v1/kv/{key}",
        "Write a raw value (not under vm/: that key space belongs to the VM API)",
        response=m.Ok,
        body="application/octet-stream",
        params=["key", "client", "seq"],
        errors=(*WRITE_ERRORS, 403),
        tags=("kv",),
        body_required=False,  # no body: the empty value
    ),
    Op(
        "get",
        "/v1/kv/{key}",
        "Read a raw value (linearizable)",
        response="application/octet-stream",
        params=["key"],
        errors=(*READ_ERRORS, 404, 422),
        tags=("kv",),
    ),
    Op(
        "delete",
        "/v1/kv/{key}",
        "Delete a raw value",
        response=m.KVDeleted,
        params=["key", "client", "seq"],
        errors=(*WRITE_ERRORS, 403),
        tags=("kv",),
    ),
    Op(
        "post",
        "/v1/cas/{key}",
        "Compare-and-swap a raw value",
        response=m.CasResult,
        body=m.CasRequest,
        params=["key", "client", "seq"],
        errors=(*WRITE_ERRORS, 403),
        tags=("kv",),
    ),
    Op(
        "post",
        "/v1/vms",
        "Create a VM record homed in this node's region (schema 2, docs/conflict.md)",
        ok=201,
        response=VMView,
        body=VMCreate,
        errors=(*WRITE_ERRORS, 409, 421),
        tags=("vms",),
        etag=True,
    ),
    Op(
        "get",
        "/v1/vms",
        "The VM records of this region (records that do not parse are listed apart)",
        response=m.VMList,
        errors=READ_ERRORS,
        tags=("vms",),
    ),
    Op(
        "get",
        "/v1/vms/{id}",
        "One VM record; ETag is its version",
        response=VMView,
        params=["id"],
        errors=(*READ_ERRORS, 404, 409),
        tags=("vms",),
        etag=True,
    ),
    vm_write(
        "put",
        "/v1/vms/{id}/spec",
        "Replace a VM's spec (If-Match: only at that version)",
        body=VMSpec,
    ),
    vm_write(
        "post",
        "/v1/vms/{id}/power",
        "Power a VM on or off (If-Match: only at that version)",
        body=PowerChange,
    ),
    Op(
        "delete",
        "/v1/vms/{id}",
        "Delete a VM record (also a corrupt one; If-Match: only at that version)",
        response=m.VMDeleted,
        params=["id", "if_match"],
        errors=(*VM_WRITE_ERRORS,),
        tags=("vms",),
    ),
    vm_write(
        "patch",
        "/v1/vms/{id}",
        "Change a VM's name, labels (null removes one), tags or description",
        body=VMPatch,
    ),
    vm_write(
        "post",
        "/v1/vms/{id}/lifecycle",
        "Move a VM to a lifecycle state (allowed transitions only, else 409 naming the state)",
        body=LifecycleChange,
    ),
    vm_write("post", "/v1/vms/{id}/reboot", "Reboot a running VM (counts a restart)"),
    vm_write(
        "post",
        "/v1/vms/{id}/readdress",
        "Lease a NIC a new address from the region's pool (no body: eth0, the lowest free)",
        body=ReaddressChange,
        body_required=False,
    ),
    vm_write(
        "put", "/v1/vms/{id}/placement", "Place a VM on a host (and zone)", body=PlacementChange
    ),
    Op(
        "get",
        "/v1/conflicts",
        "The conflicts this node's replica knows (its audit trail), newest last",
        response="application/json",
        params=["c_vm", "c_since", "c_until", "c_status", "c_all", "c_limit"],
        errors=(*READ_ERRORS, 422),
        tags=("conflicts",),
    ),
    Op(
        "get",
        "/v1/conflicts/{id}",
        "One conflict and its events",
        response="application/json",
        params=["conflict"],
        errors=READ_ERRORS,
        tags=("conflicts",),
    ),
    Op(
        "post",
        "/v1/conflicts/{id}/resolve",
        "Decide a conflict: exactly one of pick, values or accept (a write of the VM)",
        response=VMView,
        body=ConflictResolve,
        params=["conflict"],
        errors=VM_WRITE_ERRORS,
        tags=("conflicts",),
    ),
    Op(
        "post",
        "/v1/conflicts/{id}/rollback",
        "Undo a conflict's decision (a write of the VM that parks it for a manual one)",
        response=VMView,
        params=["conflict"],
        errors=VM_WRITE_ERRORS,
        tags=("conflicts",),
    ),
]

PARAMETERS: dict[str, dict[str, Any]] = {
    "key": {
        "name": "key",
        "in": "path",
        "required": True,
        "description": "the key (any string, at most 1024 characters)",
        "schema": {"type": "string", "minLength": 1, "maxLength": MAX_KEY_CHARS},
    },
    "id": {
        "name": "id",
        "in": "path",
        "required": True,
        "description": f"the VM id (created ids match {VM_ID})",
        "schema": {"type": "string", "minLength": 1, "maxLength": 253},
    },
    "client": {
        "name": "X-Client-Id",
        "in": "header",
        "required": False,
        "description": "a client session: with X-Request-Seq, a retried write applies once",
        "schema": {"type": "string", "maxLength": MAX_CLIENT_ID},
    },
    "seq": {
        "name": "X-Request-Seq",
        "in": "header",
        "required": False,
        "description": "the session's request number (one request at a time per session)",
        "schema": {"type": "integer", "minimum": 0, "maximum": SEQ_MAX},
    },
    "conflict": {
        "name": "id",
        "in": "path",
        "required": True,
        "description": "a conflict's id (as /v1/conflicts lists them)",
        "schema": {"type": "string", "minLength": 1, "maxLength": 300},
    },
    "c_vm": {"name": "vm", "in": "query", "required": False, "schema": {"type": "string"}},
    "c_since": {
        "name": "since",
        "in": "query",
        "required": False,
        "description": "from this time: ms since the epoch, or an RFC 3339 time",
        "schema": {"anyOf": [{"type": "string", "pattern": "^[0-9]{1,15}$"}, TIME]},
    },
    "c_until": {
        "name": "until",
        "in": "query",
        "required": False,
        "description": "up to this time: ms since the epoch, or an RFC 3339 time",
        "schema": {"anyOf": [{"type": "string", "pattern": "^[0-9]{1,15}$"}, TIME]},
    },
    "c_status": {
        "name": "status",
        "in": "query",
        "required": False,
        "schema": {"type": "string", "enum": ["resolved", "siblings", "manual", "superseded"]},
    },
    "c_all": {
        "name": "all",
        "in": "query",
        "required": False,
        "description": "1: superseded entries too",
        "schema": {"type": "string"},
    },
    "c_limit": {
        "name": "limit",
        "in": "query",
        "required": False,
        "schema": {"type": "integer", "minimum": 1, "maximum": 10000},
    },
    "if_match": {
        "name": "If-Match",
        "in": "header",
        "required": False,
        "description": 'the ETag (version) the VM must be at, e.g. "3", or *',
        "schema": {"type": "string", "pattern": IF_MATCH},
    },
}


def _schemas(ops: list[Op]) -> tuple[dict[tuple[Any, str], Any], dict[str, Any]]:
    wanted: dict[tuple[type[BaseModel], JsonSchemaMode], None] = {}
    for op in ops:
        if isinstance(op.body, type):
            wanted[(op.body, "validation")] = None
        if isinstance(op.response, type):
            wanted[(op.response, "serialization")] = None
    wanted[(m.ProblemBody, "serialization")] = None
    refs, top = models_json_schema(list(wanted), ref_template=REF)
    return {(k[0], str(k[1])): v for k, v in refs.items()}, top.get("$defs", {})


def _content(kind: type[BaseModel] | str, refs: Any, mode: str) -> dict[str, Any]:
    if isinstance(kind, str):
        schema: dict[str, Any] = {"type": "string"}
        if kind == "application/octet-stream":
            schema = {"type": "string", "format": "binary"}
        elif kind == "application/json":
            schema = {"type": "object"}
        return {kind: {"schema": schema}}
    return {"application/json": {"schema": refs[(kind, mode)]}}


def build(title: str, ops: list[Op], description: str) -> dict[str, Any]:
    refs, defs = _schemas(ops)
    problem_ref = refs[(m.ProblemBody, "serialization")]
    paths: dict[str, dict[str, Any]] = {}
    for op in ops:
        responses: dict[str, Any] = {}
        ok: dict[str, Any] = {"description": "done"}
        if op.response is not None:
            ok["content"] = _content(op.response, refs, "serialization")
        if op.etag:
            ok["headers"] = {"ETag": {"$ref": "#/components/headers/ETag"}}
        responses[str(op.ok)] = ok
        statuses = set(op.errors)
        if op.path.startswith("/v1/"):
            statuses |= {404, 405}
        if op.body is not None:
            statuses |= {400, 413}
        for status in sorted(statuses):
            if op.path == "/readyz" and status == 503:
                responses["503"] = {
                    "description": "not ready",
                    "content": _content(m.Readiness, refs, "serialization"),
                }
                continue
            responses[str(status)] = {"$ref": f"#/components/responses/E{status}"}
        entry: dict[str, Any] = {
            "summary": op.summary,
            "operationId": re.sub(r"[^a-z0-9]+", "_", f"{op.method} {op.path}".lower()).strip("_"),
            "tags": list(op.tags),
            "responses": responses,
        }
        if op.description:
            entry["description"] = op.description
        if op.params:
            entry["parameters"] = [{"$ref": f"#/components/parameters/{p}"} for p in op.params]
        if op.body is not None:
            entry["requestBody"] = {
                "required": op.body_required,
                "content": _content(op.body, refs, "validation"),
            }
        paths.setdefault(op.path, {})[op.method] = entry
    by_status: dict[int, list[str]] = {}
    for kind, (_, status) in TYPES.items():
        by_status.setdefault(status, []).append(kind)
    error_responses = {
        f"E{status}": {
            "description": "problem (" + ", ".join(kinds) + ")",
            "content": {PROBLEM_JSON: {"schema": problem_ref}},
            **(
                {"headers": {"Retry-After": {"$ref": "#/components/headers/RetryAfter"}}}
                if status in (429, 503)
                else {}
            ),
        }
        for status, kinds in sorted(by_status.items())
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": "1", "description": description},
        "paths": paths,
        "components": {
            "schemas": defs,
            "parameters": PARAMETERS,
            "responses": error_responses,
            "headers": {
                "ETag": {
                    "description": 'the VM record\'s version as a strong entity tag, e.g. "3"',
                    "schema": {"type": "string"},
                },
                "RetryAfter": {
                    "description": "seconds to wait before retrying (the request was not applied)",
                    "schema": {"type": "string"},
                },
            },
        },
    }


FEDERATION_OPS = [
    Op(
        "get",
        "/v1/federation/vms",
        "Every region's VM records as this replica holds them",
        response=m.FederationVMs,
        tags=("federation",),
    ),
    Op(
        "get",
        "/v1/federation/vms/{id}",
        "One VM record from this replica, whichever region homes it",
        response=VMView,
        params=["id"],
        errors=(404, 409),
        tags=("federation",),
    ),
    Op(
        "get",
        "/v1/federation/status",
        "Replica status: the federation file in force, peers, lags, what is not honoured",
        response="application/json",
        tags=("federation",),
    ),
    Op(
        "post",
        "/v1/federation/netem",
        "Cut regions off in this node's federation links (novacron demo only)",
        response=m.NetemState,
        body=m.NetemRequest,
        errors=(400, 413, 422),
        tags=("federation",),
    ),
]


def node_document() -> dict[str, Any]:
    return build(
        "NovaCron node API",
        [*OPS, *FEDERATION_OPS],
        "A region node: its consensus group's member (raw KV, VM records, admin) and, with a "
        "federation file, its replica of the federation's VM records (/v1/federation). "
        "Every error is an RFC 9457 problem (application/problem+json) whose `outcome` says "
        "`not_applied` (certainly did not happen: 4xx, 429, 503) or `unknown` (may have "
        "happened: 504). docs/api.md.",
    )
