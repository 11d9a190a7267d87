"""The OpenAPI 3.1 document of the JSON API, generated from the types the routes use.

Bodies are the structs `_api.py` decodes; replies are the client's own
records (`tako.Run`, `tako.Approval`). msgspec writes their JSON Schemas, so
the document cannot drift from what the routes accept and send.
"""

from __future__ import annotations

from typing import Any

import msgspec

from tako._records import STATUSES, Approval, Run
from tako.http._api import (
    STATUS_OF_CODE,
    CancelBody,
    DecisionBody,
    ErrorReply,
    EventBody,
    SignalBody,
    SignalReply,
    StartBody,
    StartReply,
)

REF = "#/components/schemas/{name}"
EVENT = {"type": "string", "minLength": 1, "maxLength": 256}
_TYPES: list[Any] = [
    StartBody,
    EventBody,
    SignalBody,
    CancelBody,
    DecisionBody,
    StartReply,
    SignalReply,
    ErrorReply,
    Run,
    Approval,
]


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": REF.format(name=name)}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Any]:
    out = {}
    for status in sorted({401, 403, 503, *statuses}):
        codes = sorted(c for c, s in STATUS_OF_CODE.items() if s == status)
        out[str(status)] = {"description": ", ".join(codes), **_json(_ref("ErrorReply"))}
    return out


def _op(
    summary: str,
    reply: dict[str, Any] | None,
    *,
    body: str | None = None,
    body_required: bool = True,
    status: str = "200",
    errors: tuple[int, ...] = (),
    params: list[dict[str, Any]] | None = None,
    stream: bool = False,
) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "responses": {}}
    if stream:
        op["responses"][status] = {
            "description": "server-sent events; each event's data is the object as JSON",
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
        }
    else:
        op["responses"][status] = {"description": "OK", **_json(reply or {})}
    op["responses"].update(_errors(*errors))
    if body is not None:
        op["requestBody"] = {"required": body_required, **_json(_ref(body))}
        op["responses"].update(_errors(400, 413, *errors))
    if params:
        op["parameters"] = params
    return op


def _path(name: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": schema or {"type": "string"}}


def _query(name: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema or {"type": "string"}}


def _needs(action: str, field: str, schema: dict[str, Any]) -> dict[str, Any]:
    """A decision with this `action` must carry `field` (msgspec cannot say so)."""
    return {
        "if": {"properties": {"action": {"const": action}}},
        "then": {"required": [field], "properties": {field: schema}},
    }


def openapi_document(title: str = "tako") -> dict[str, Any]:
    """The whole document, as plain JSON-ready values."""
    _, components = msgspec.json.schema_components(_TYPES, ref_template=REF)
    # takod's approval object carries the JSON Schema of an edited value; the client's
    # record does not read it
    components["Approval"]["properties"]["schema"] = {
        "anyOf": [{"type": "object"}, {"type": "null"}],
        "description": "the JSON Schema an edited value must match",
    }
    for schema in components.values():
        # replies are closed too: a field the API sends must be in the document
        schema.setdefault("additionalProperties", False)
    components["DecisionBody"]["allOf"] = [
        _needs("edit", "value", {}),
        _needs("reject", "reason", {"type": "string", "minLength": 1}),
    ]
    run, approval = _ref("Run"), _ref("Approval")
    runs_filters = [
        _query("status", {"enum": ["", *STATUSES]}),
        _query("workflow"),
        _query("limit", {"type": "integer", "minimum": 1, "maximum": 10000}),
    ]
    start = _op("Start a run", _ref("StartReply"), body="StartBody", status="201", errors=(404,))
    start["responses"]["200"] = {
        "description": "a run with that run_id already exists (deduplicated)",
        **_json(_ref("StartReply")),
    }
    paths = {
        "/api/runs": {
            "post": start,
            "get": _op("List runs, newest first", {"type": "array", "items": run},
                       params=runs_filters, errors=(400,)),
        },
        "/api/runs/{run_id}": {
            "get": _op("One run with its steps", run, params=[_path("run_id")], errors=(404,)),
        },
        "/api/runs/{run_id}/cancel": {
            "post": _op("Cancel a run", run, body="CancelBody", body_required=False,
                        params=[_path("run_id")], errors=(404, 409)),
        },
        "/api/runs/{run_id}/retry": {
            "post": _op("Retry a failed or cancelled run", run, params=[_path("run_id")],
                        errors=(404, 409)),
        },
        "/api/runs/{run_id}/events": {
            "post": _op("A signal to this run only", _ref("SignalReply"), body="EventBody",
                        params=[_path("run_id")], errors=(404,)),
        },
        "/api/runs/{run_id}/stream": {
            "get": _op("Live changes of a run", None, params=[_path("run_id")],
                       errors=(404,), stream=True),
        },
        "/api/signals/{event}": {
            "post": _op("Send a signal", _ref("SignalReply"), body="SignalBody",
                        body_required=False, params=[_path("event", EVENT)]),
        },
        "/api/approvals": {
            "get": _op("Pending approval requests, oldest first",
                       {"type": "array", "items": approval},
                       params=[_query("approver"), _query("workflow")]),
        },
        "/api/approvals/{key}": {
            "get": _op("One approval request with its history", approval,
                       params=[_path("key")], errors=(404,)),
        },
        "/api/approvals/{key}/decision": {
            "post": _op("Decide an approval request", approval, body="DecisionBody",
                        params=[_path("key")], errors=(404, 409)),
        },
        "/api/approvals/{key}/stream": {
            "get": _op("Live changes of an approval request", None, params=[_path("key")],
                       errors=(404,), stream=True),
        },
    }  # fmt: skip
    return {
        "openapi": "3.1.0",
        "info": {"title": f"{title} HTTP API", "version": "1"},
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}, {}],
        "paths": paths,
    }
