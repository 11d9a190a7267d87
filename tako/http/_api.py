"""The JSON API under `/api`: the socket protocol's operations as HTTP routes.

Each route checks the caller's scope, decodes its body into a typed struct
(the same structs the OpenAPI document is generated from), asks takod, and
answers with the run, approval or signal objects the socket protocol
replies with. Errors keep the protocol's codes: `{"error": {"code",
"message"}}` with the HTTP status that fits the code.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tako import _replies as wire
from tako._durations import parse_duration
from tako._errors import Forbidden, InvalidRequest, TakoError
from tako._protocol import (
    ABSENT,
    TRACEPARENT_PATTERN,
    Approve,
    Cancel,
    CancelApproval,
    GetApproval,
    GetRun,
    ListApprovals,
    ListRuns,
    Name,
    Reject,
    Retry,
    RunId,
    Seconds,
    Signal,
    Start,
)
from tako._records import NULL, ApprovalView, RunView
from tako.http._access import Access, Actor
from tako.http._link import TakodLink

# The HTTP status of each error code; anything else is a 500.
STATUS_OF_CODE = {
    "invalid": 400,
    "bad_json": 400,
    "unknown_op": 400,
    "unauthorized": 401,
    "forbidden": 403,
    "link_tampered": 403,
    "link_expired": 403,
    "not_found": 404,
    "approval_not_found": 404,
    "unknown_workflow": 404,
    "not_allowed": 409,
    "stale": 409,
    "payload_too_large": 413,
    "too_large": 413,
    "unavailable": 503,
    "storage": 503,
}

_encoder = msgspec.json.Encoder()


# -- bodies (decoded strictly: an unknown field is a mistake worth saying) -----------


Json = msgspec.Raw | msgspec.UnsetType  # any JSON, passed on to takod as it came


def given(value: Json, absent: msgspec.Raw = NULL) -> msgspec.Raw:
    """The body's JSON value as its text came, compacted (`absent` if it was left out).

    A request to takod is one line, and a raw value is copied into it verbatim:
    a line break in the body's own layout would end the request early and leave
    its tail to be read as the next one. Only whitespace between tokens goes;
    numbers and strings stay as written, for takod to check as it checks any."""
    if isinstance(value, msgspec.UnsetType):
        return absent
    return msgspec.Raw(msgspec.json.format(value, indent=-1))


# Seconds, or a duration such as "10m" or "1h30m" (up to a century, as takod takes it).
Duration = (
    Seconds
    | Annotated[str, msgspec.Meta(pattern=r"^\s*(\d+(\.\d+)?|(\d+(\.\d+)?(ms|s|m|h|d|w))+)\s*$")]
    | None
)


class StartBody(msgspec.Struct, forbid_unknown_fields=True):
    workflow: Name
    payload: Json = msgspec.UNSET
    run_id: RunId | None = None
    delay: Duration = None


class EventBody(msgspec.Struct, forbid_unknown_fields=True):
    name: Name
    payload: Json = msgspec.UNSET


class SignalBody(msgspec.Struct, forbid_unknown_fields=True):
    payload: Json = msgspec.UNSET
    ttl: Duration = None


class CancelBody(msgspec.Struct, forbid_unknown_fields=True):
    reason: str | None = None


class DecisionBody(msgspec.Struct, forbid_unknown_fields=True):
    action: Literal["approve", "reject", "edit", "cancel"]
    value: Json = msgspec.UNSET
    reason: str | None = None
    decision_id: str | None = None
    by: Name | None = None  # honoured only for an admin credential
    seen: str | None = None  # the `digest` of the value the decider saw


# The HTTP replies to a start and a signal: takod's, without the socket's `id` and `ok`.
class StartReply(msgspec.Struct):
    run_id: str
    status: str
    deduplicated: bool


class SignalReply(msgspec.Struct):
    delivered: int
    kept: bool


class ErrorDetail(msgspec.Struct):
    code: str
    message: str


class ErrorReply(msgspec.Struct):
    error: ErrorDetail


def json_response(value: Any, status: int = 200) -> Response:
    return Response(_encoder.encode(value), status, media_type="application/json")


def traceparent_of(request: Request) -> str | None:
    """The caller's W3C `traceparent` header, carried into the run; one that is not
    well formed is ignored, as the trace context recommendation says."""
    value = request.headers.get("traceparent", "").strip().lower()
    return value if re.match(TRACEPARENT_PATTERN, value) else None


def error_response(exc: TakoError) -> Response:
    status = STATUS_OF_CODE.get(exc.code, 500)
    return json_response({"error": {"code": exc.code, "message": exc.message}}, status)


def decode_body(raw: bytes, type_: type[Any]) -> Any:
    """The body as `type_`; bad JSON and a wrong shape are `bad_json` and `invalid`."""
    try:
        return msgspec.json.decode(raw or b"{}", type=type_)
    except msgspec.ValidationError as exc:
        raise InvalidRequest(str(exc)) from None
    except msgspec.DecodeError as exc:
        error = InvalidRequest(f"invalid JSON: {exc}")
        error.code = "bad_json"
        raise error from None


def seconds(value: float | str | None, what: str) -> float | None:
    if value is None:
        return None
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise InvalidRequest(f"{what}: {exc}") from None


Handler = Callable[[Request, Actor], Awaitable[Response]]


class JsonApi:
    """The `/api` routes, bound to one link to takod and one access policy."""

    def __init__(self, link: TakodLink, access: Access) -> None:
        self.link = link
        self.access = access

    def routes(self) -> list[Route]:
        """One route per path, so a 405's `Allow` names every method the path takes."""
        table: dict[str, dict[str, tuple[Handler, str]]] = {
            "/api/runs": {"POST": (self.start, "start"), "GET": (self.list_runs, "read")},
            "/api/runs/{run_id}": {"GET": (self.get_run, "read")},
            "/api/runs/{run_id}/cancel": {"POST": (self.cancel, "start")},
            "/api/runs/{run_id}/retry": {"POST": (self.retry, "start")},
            "/api/runs/{run_id}/events": {"POST": (self.run_event, "signal")},
            "/api/signals/{event}": {"POST": (self.signal, "signal")},
            "/api/approvals": {"GET": (self.list_approvals, "read")},
            "/api/approvals/{key}": {"GET": (self.get_approval, "read")},
            "/api/approvals/{key}/decision": {"POST": (self.decide, "decide")},
        }
        return [self._route(path, methods) for path, methods in table.items()]

    def _route(self, path: str, methods: dict[str, tuple[Handler, str]]) -> Route:
        async def endpoint(request: Request) -> Response:
            method = "GET" if request.method == "HEAD" else request.method
            handler, scope = methods[method]
            try:
                actor = await self.access.actor(request)
                actor.require(scope)
                return await handler(request, actor)
            except TakoError as exc:
                return error_response(exc)

        return Route(path, endpoint, methods=list(methods))

    async def start(self, request: Request, actor: Actor) -> Response:
        body: StartBody = decode_body(await request.body(), StartBody)
        ask = Start(
            workflow=body.workflow,
            payload=given(body.payload),
            run_id=body.run_id,
            delay=seconds(body.delay, "delay"),
            traceparent=traceparent_of(request),
        )
        reply = await self.link.call(ask, wire.StartReply)
        started = StartReply(reply.run_id, reply.status, reply.deduplicated)
        return json_response(started, 200 if started.deduplicated else 201)

    async def list_runs(self, request: Request, actor: Actor) -> Response:
        query = request.query_params
        try:
            limit = int(query.get("limit", "100"))
        except ValueError:
            raise InvalidRequest(f"limit: expected a number, got {query['limit']!r}") from None
        ask = ListRuns(
            status=query.get("status") or None,
            workflow=query.get("workflow") or None,
            limit=limit,
        )
        return json_response((await self.link.call(ask, wire.RunsReply[RunView])).runs)

    async def get_run(self, request: Request, actor: Actor) -> Response:
        return json_response(await run_view(self.link, request.path_params["run_id"]))

    async def cancel(self, request: Request, actor: Actor) -> Response:
        body: CancelBody = decode_body(await request.body(), CancelBody)
        ask = Cancel(run_id=request.path_params["run_id"], reason=body.reason)
        return json_response((await self.link.call(ask, wire.RunReply[RunView])).run)

    async def retry(self, request: Request, actor: Actor) -> Response:
        ask = Retry(run_id=request.path_params["run_id"])
        return json_response((await self.link.call(ask, wire.RunReply[RunView])).run)

    async def run_event(self, request: Request, actor: Actor) -> Response:
        body: EventBody = decode_body(await request.body(), EventBody)
        run_id = request.path_params["run_id"]
        await run_view(self.link, run_id)  # a 404 for an unknown run
        ask = Signal(event=body.name, payload=given(body.payload), run_id=run_id)
        return await self._signal(ask)

    async def signal(self, request: Request, actor: Actor) -> Response:
        body: SignalBody = decode_body(await request.body(), SignalBody)
        ask = Signal(
            event=request.path_params["event"],
            payload=given(body.payload),
            ttl=seconds(body.ttl, "ttl"),
        )
        return await self._signal(ask)

    async def _signal(self, ask: Signal) -> Response:
        reply = await self.link.call(ask, wire.SignalReply)
        return json_response(SignalReply(reply.delivered, reply.kept))

    async def list_approvals(self, request: Request, actor: Actor) -> Response:
        query = request.query_params
        ask = ListApprovals(
            approver=query.get("approver") or None,
            workflow=query.get("workflow") or None,
        )
        return json_response(
            (await self.link.call(ask, wire.ApprovalsReply[ApprovalView])).approvals
        )

    async def get_approval(self, request: Request, actor: Actor) -> Response:
        return json_response(await approval_view(self.link, request.path_params["key"]))

    async def decide(self, request: Request, actor: Actor) -> Response:
        body: DecisionBody = decode_body(await request.body(), DecisionBody)
        approval = await decide(self.link, request.path_params["key"], body, acting_as(actor, body))
        return json_response(approval)


def acting_as(actor: Actor, body: DecisionBody) -> str:
    """The actor recorded with a decision: the credential's, never a free-text field, except
    that an admin credential may decide on someone's behalf."""
    if body.by is None or body.by == actor.name:
        return actor.name
    if not actor.admin:
        raise Forbidden(
            f"`by` is only honoured for an admin credential; {actor.name} decides as itself"
        )
    return body.by


async def run_view(link: TakodLink, run_id: str) -> RunView:
    """The run with its steps, as takod sent it."""
    return (await link.call(GetRun(run_id=run_id), wire.RunReply[RunView])).run


async def approval_view(link: TakodLink, key: str) -> ApprovalView:
    """The approval request with its history, as takod sent it."""
    return (await link.call(GetApproval(key=key), wire.ApprovalReply[ApprovalView])).approval


async def decide(link: TakodLink, key: str, body: DecisionBody, by: str) -> ApprovalView:
    """Apply one decision as `by`; the approval object as it stands after it.

    takod refuses with `not_allowed` both a decision on a decided request (409: the
    state moved on) and one by someone who is not an approver (403): the request's
    own status tells which."""
    try:
        return await _decide(link, key, body, by)
    except TakoError as exc:
        if exc.code != "not_allowed":
            raise
        if (await approval_view(link, key)).status == "pending":
            raise Forbidden(exc.message) from None
        raise


async def _decide(link: TakodLink, key: str, body: DecisionBody, by: str) -> ApprovalView:
    ask: Approve | Reject | CancelApproval
    common: dict[str, Any] = {
        "key": key,
        "by": by,
        "decision_id": body.decision_id,
        "seen": body.seen,
    }
    match body.action:
        case "approve" | "edit":
            value = given(body.value, ABSENT)
            if value is ABSENT and body.action == "edit":
                raise InvalidRequest("an edit needs the edited `value`")
            ask = Approve(value=value, **common)
        case "reject":
            if not body.reason:
                raise InvalidRequest("a rejection needs a `reason`")
            ask = Reject(reason=body.reason, **common)
        case "cancel":
            ask = CancelApproval(reason=body.reason, **common)
    return (await link.call(ask, wire.ApprovalReply[ApprovalView])).approval
