"""The wire: newline-delimited JSON messages between clients, takod and workers.

Every request is a tagged `msgspec.Struct` (the tag is the `op` field), so one
reusable decoder turns a line into a typed request and names the field that
is wrong when it cannot. Payloads and results stay `msgspec.Raw` (undecoded
JSON) on their way through takod: the supervisor stores and forwards bytes
and never needs the user's types. Durations are seconds; times are
milliseconds since the Unix epoch.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal, get_args

import msgspec

from tako._errors import BadJson, InvalidRequest, TakoError, UnknownOp
from tako._records import NULL as NULL  # takod and workers read it from here
from tako._records import RUN_ID_PATTERN, RUN_ID_RULE

ABSENT = msgspec.Raw(b"")  # a Raw field that was not sent at all (null is a value)
RunId = Annotated[str, msgspec.Meta(pattern=RUN_ID_PATTERN)]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
Seconds = Annotated[float, msgspec.Meta(ge=0, le=100 * 365 * 86400)]  # up to a century
TRACEPARENT_PATTERN = r"^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$"
TraceParent = Annotated[str, msgspec.Meta(pattern=TRACEPARENT_PATTERN)]  # W3C trace context
ReqId = int | str | None


class _Req(
    msgspec.Struct, tag_field="op", forbid_unknown_fields=False, kw_only=True, omit_defaults=True
):
    """A request. Defaults are left out of an encoded line: takod reads them back as
    the same defaults, and a field never given (`Approve.value`) must stay absent."""

    id: ReqId = None


# -- client operations --------------------------------------------------------


class Start(_Req, tag="start"):
    workflow: Name
    payload: msgspec.Raw = NULL
    run_id: RunId | None = None
    delay: Seconds | None = None
    # the caller's trace context (W3C), carried into the run's spans
    traceparent: TraceParent | None = None


class Signal(_Req, tag="signal"):
    event: Name
    payload: msgspec.Raw = NULL
    run_id: RunId | None = None
    ttl: Seconds | None = None


class GetRun(_Req, tag="get_run"):
    run_id: str


class ListRuns(_Req, tag="list_runs"):
    status: str | None = None
    workflow: str | None = None
    limit: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 100


class Cancel(_Req, tag="cancel"):
    run_id: str
    reason: str | None = None


class Retry(_Req, tag="retry"):
    run_id: str


class Status(_Req, tag="status"):
    pass


class Workflows(_Req, tag="workflows"):
    pass


class Schedules(_Req, tag="schedules"):
    """The app's cron schedules with their next ticks (`tako schedules`)."""


class Metrics(_Req, tag="metrics"):
    """The supervisor's metrics in the Prometheus text format (`GET /metrics`)."""


class Approve(_Req, tag="approve"):
    """Approve a pending request, optionally with an edited value (`value`)."""

    key: str
    by: Name
    value: msgspec.Raw = ABSENT
    decision_id: str | None = None
    seen: str | None = None  # the `digest` the decider saw; another one: refused, `stale`


class Reject(_Req, tag="reject"):
    key: str
    by: Name
    reason: Annotated[str, msgspec.Meta(min_length=1)]
    decision_id: str | None = None
    seen: str | None = None


class CancelApproval(_Req, tag="cancel_approval"):
    key: str
    by: Name
    reason: str | None = None
    decision_id: str | None = None
    seen: str | None = None


class ListApprovals(_Req, tag="list_approvals"):
    approver: str | None = None
    workflow: str | None = None
    status: str | None = "pending"
    limit: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 100


class GetApproval(_Req, tag="get_approval"):
    key: str


class Wait(_Req, tag="wait"):
    """Reply once the run is finished (with `until="parked"`: or sleeping or waiting),
    or with `finished: false` after `timeout`."""

    run_id: str
    timeout: Seconds | None = None
    until: Literal["finished", "parked"] = "finished"


# -- the HTTP surface's operations: tokens, links, live changes -----------------

Scope = Literal["read", "start", "signal", "decide", "admin"]


class CreateToken(_Req, tag="create_token"):
    name: Name
    scopes: Annotated[list[Scope], msgspec.Meta(min_length=1)]


class ListTokens(_Req, tag="list_tokens"):
    pass


class RevokeToken(_Req, tag="revoke_token"):
    name: str


class GetAccess(_Req, tag="access"):
    """Who a token is and what it may do; with no token, how many tokens exist."""

    token: str | None = None


class ApprovalLinks(_Req, tag="approval_links"):
    key: str


class OpenLink(_Req, tag="open_link"):
    token: str


class Watch(_Req, tag="watch"):
    """Reply once the run or approval (exactly one of `run_id`, `key`) differs from
    `fingerprint`, or with `changed: false` after `timeout`."""

    run_id: str | None = None
    key: str | None = None
    fingerprint: str | None = None
    timeout: Seconds | None = None


HTTP_OPS = (CreateToken, ListTokens, RevokeToken, GetAccess, ApprovalLinks, OpenLink, Watch)


# -- worker operations (on a worker's private connection) ----------------------


class Hello(_Req, tag="hello"):
    pid: int
    runtime: str = "asyncio"


class StepDone(_Req, tag="step"):
    """Checkpoint one finished step; acknowledged only after its commit."""

    run_id: str
    token: int
    key: str
    name: Name
    kind: Literal["run"] = "run"
    status: Literal["completed", "failed"] = "completed"
    result: msgspec.Raw = NULL
    error: str | None = None
    attempts: int = 1
    started_at: int = 0
    finished_at: int = 0
    seq: int = 0  # the step's position in its execution: the timeline's order


class ChildSpec(msgspec.Struct, kw_only=True):
    """The child run a `step.invoke` (`wait`) or `step.start_child` starts."""

    workflow: Name
    payload: msgspec.Raw = NULL
    run_id: RunId | None = None  # None: `<parent run id>.<step key>`, the same on replay
    wait: bool = False
    traceparent: TraceParent | None = None  # the parent's step span


class ApprovalSpec(msgspec.Struct, kw_only=True):
    """What `step.approval(...)` asks for; stored with the request when the run parks."""

    summary: str
    data: msgspec.Raw = NULL
    approvers: list[str] | None = None
    required: Annotated[int, msgspec.Meta(ge=1)] = 1
    timeout: Seconds | None = None
    on_timeout: Literal["reject", "fail"] = "reject"
    remind_every: Annotated[float, msgspec.Meta(gt=0)] | None = None
    escalate_after: Seconds | None = None
    escalate_to: list[str] | None = None
    schema: msgspec.Raw = NULL


class Park(_Req, tag="park"):
    """Park a run on a sleep, a signal, an approval, or a step's retry backoff."""

    run_id: str
    token: int
    key: str
    name: Name
    kind: Literal["sleep", "wait", "retry", "approval", "child"]
    # when it falls due: `delay` ms after takod parks it (takod's clock is the one clock),
    # or `wake_at`, an instant the workflow itself chose (`sleep_until`)
    delay: int | None = None
    wake_at: int | None = None
    event: Name | None = None
    events: list[Name] | None = None  # wait_for_any: the first of these
    schema: msgspec.Raw = NULL  # JSON Schema of wait_for(type=...); null when untyped
    attempts: int = 0
    error: str | None = None
    started_at: int = 0
    seq: int = 0
    approval: ApprovalSpec | None = None
    child: ChildSpec | None = None


class Finish(_Req, tag="finish"):
    """The handler returned or raised; `outcome` says which."""

    run_id: str
    token: int
    outcome: Literal["completed", "failed", "fatal", "cancelled"]
    result: msgspec.Raw = NULL
    error: str | None = None
    traceback: str | None = None


class Keyed(_Req, tag="keyed"):
    """The concurrency key of a run, computed by the worker from its payload (a
    workflow's `key=`); takod lets it go on, or holds it back while its key is full."""

    run_id: str
    token: int
    key: str


class Leaving(_Req, tag="leaving"):
    """An idle worker asks to exit; takod agrees only if nothing is assigned to it."""


class Beat(_Req, tag="beat"):
    """A busy worker is alive: renews the lease on the runs it holds."""


class Prune(_Req, tag="prune"):
    """Delete finished runs older than `older_than` seconds (default: `[runs] retention`)."""

    older_than: Seconds | None = None


ClientRequest = (
    Start
    | Signal
    | GetRun
    | ListRuns
    | Cancel
    | Retry
    | Status
    | Workflows
    | Metrics
    | Schedules
    | Wait
    | Approve
    | Reject
    | CancelApproval
    | ListApprovals
    | GetApproval
    | Prune
    | CreateToken
    | ListTokens
    | RevokeToken
    | GetAccess
    | ApprovalLinks
    | OpenLink
    | Watch
)
WorkerRequest = Hello | StepDone | Park | Finish | Keyed | Leaving | Beat
Request = ClientRequest | WorkerRequest  # what either peer may send


def _tags(union: Any) -> frozenset[str]:
    return frozenset(cls.__struct_config__.tag for cls in get_args(union))


CLIENT_OPS = _tags(ClientRequest)
WORKER_OPS = _tags(WorkerRequest)
OPS = CLIENT_OPS | WORKER_OPS


# -- supervisor to worker -------------------------------------------------------


class MemoEntry(msgspec.Struct, array_like=True):
    """A finished step as a worker replays it: key, status, result, error, attempts, and
    its kind ("run", "sleep", "wait", "approval"), so a replay can tell when the code now
    calls another kind of step by that name."""

    key: str
    status: str
    result: msgspec.Raw
    error: str | None
    attempts: int
    kind: str = ""


class Assign(msgspec.Struct, tag_field="op", tag="assign"):
    run_id: str
    workflow: str
    payload: msgspec.Raw
    attempt: int
    token: int
    memo: list[MemoEntry]
    traceparent: str | None = None  # the trace context its `start` carried
    clock_ms: int = 0  # takod's clock at the hand-over: what `step.now()` counts from
    keyed: bool = False  # its workflow limits runs per key, and its key is not known yet


class Envelope(msgspec.Struct):
    """What is left to read of a request that failed to decode: its id and op."""

    id: Any = None
    op: Any = None


_envelope = msgspec.json.Decoder(Envelope)
encode = msgspec.json.Encoder().encode


class RequestError(Exception):
    """A request line that cannot be served: the id to answer and the error to send."""

    def __init__(self, req_id: ReqId, error: TakoError) -> None:
        super().__init__(error.message)
        self.req_id = req_id
        self.error = error


def safe_text(text: str) -> str:
    """`text` as valid UTF-8: a lone surrogate (from an undecodable file name, say, via
    `os.fsdecode`) becomes a visible `\\udcff` escape instead of failing the encoding."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode()
    return text


def _clean(value: Any) -> Any:
    """`value` with every string made `safe_text` (structs, lists and dicts walked)."""
    if isinstance(value, str):
        return safe_text(value)
    if isinstance(value, msgspec.Struct):
        fields = {f: _clean(getattr(value, f)) for f in value.__struct_fields__}
        return msgspec.structs.replace(value, **fields)
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, dict):
        return {_clean(k): _clean(v) for k, v in value.items()}
    return value


def encode_safely(msg: Any) -> bytes:
    """Encode a message whose text may hold lone surrogates (an error message, a
    traceback, a name): valid UTF-8 JSON always. Costs nothing unless one does."""
    try:
        return encode(msg)
    except UnicodeEncodeError:
        return encode(_clean(msg))


def non_finite(value: Any) -> bool:
    """Whether `value` holds a NaN or an infinity, which JSON encoding turns into `null`."""
    try:
        stack = [msgspec.to_builtins(value)]
    except (TypeError, ValueError):  # a msgspec.Raw or an unsupported type: not ours to judge
        return False
    while stack:
        item = stack.pop()
        if isinstance(item, float):
            if not math.isfinite(item):
                return True
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def check_json(what: str, data: bytes | msgspec.Raw) -> None:
    """Refuse JSON text that parsed as a value but that readers cannot decode back:
    invalid UTF-8 or a lone surrogate escape (`bad_json`), or a number out of range
    of a 64-bit float such as `1e400` (`invalid`), which decoders refuse or read as
    infinity. msgspec checks only the syntax of a Raw field, not these."""
    try:
        msgspec.json.decode(data)
    except msgspec.ValidationError as exc:
        raise InvalidRequest(
            f"{what} cannot be stored: {exc} (a number must fit a 64-bit float; "
            "NaN and infinity are not JSON)"
        ) from None
    except msgspec.DecodeError as exc:
        raise BadJson(f"invalid JSON: {what} is not valid text: {exc}") from None
    except RecursionError:
        raise InvalidRequest(f"{what} is JSON nested too deeply") from None


def readable_json(stored: bytes | str) -> msgspec.Raw:
    """A stored JSON value as it goes out to readers. One they could not decode (a
    number out of range, invalid UTF-8: written by hand, or before takod refused such
    values) goes out as `{"unreadable_json": "<its text>"}`, so that one bad row never
    breaks a listing of all the others."""
    try:
        msgspec.json.decode(stored)
    except (msgspec.MsgspecError, RecursionError):
        text = stored.decode(errors="replace") if isinstance(stored, bytes) else stored
        return msgspec.Raw(encode({"unreadable_json": safe_text(text)}))
    return msgspec.Raw(stored)


class _Peer:
    """How one kind of peer's request lines are read: its ops and its decoder, and
    what to tell it when it sends the other kind's op."""

    def __init__(self, union: Any, ops: frozenset[str], others: frozenset[str], whose: str):
        self.decoder = msgspec.json.Decoder(union)
        self.ops = ops
        self.others = others
        self.whose = whose

    def decode(self, line: bytes) -> Any:
        """Decode one request line, or raise RequestError with the reply it deserves."""
        try:
            return self.decoder.decode(line)
        except msgspec.ValidationError as exc:
            req_id, op = _envelope_of(line, exc)
            err: TakoError
            if isinstance(op, str) and op in self.others:
                err = InvalidRequest(self.whose.format(op=op))
            elif isinstance(op, str) and op not in self.ops:
                err = UnknownOp(f"unknown op {op!r}; see docs/protocol.md for the list")
            else:
                err = InvalidRequest(_readable(str(exc)))
            raise RequestError(req_id, err) from None
        except (msgspec.DecodeError, UnicodeDecodeError) as exc:
            raise RequestError(None, BadJson(f"invalid JSON: {exc}")) from None
        except RecursionError:
            raise RequestError(None, InvalidRequest("JSON nested too deeply")) from None


def _envelope_of(line: bytes, exc: msgspec.ValidationError) -> tuple[ReqId, Any]:
    """The id and op of a line that failed to decode as a request, to answer it by."""
    try:
        env = _envelope.decode(line)
    except msgspec.ValidationError:  # JSON, but not an object: no id or op to read
        env = Envelope()
    except (msgspec.DecodeError, UnicodeDecodeError):
        # not JSON after all: the typed decoder just tripped on a value first
        raise RequestError(None, BadJson(f"invalid JSON: {exc}")) from None
    except RecursionError:
        env = Envelope()
    if not isinstance(env.id, int | str) or isinstance(env.id, bool):
        env.id = None
    return env.id, env.op


_any_peer = _Peer(Request, OPS, frozenset(), "")
_client = _Peer(ClientRequest, CLIENT_OPS, WORKER_OPS, "op {op!r} is for worker processes only")
_worker = _Peer(WorkerRequest, WORKER_OPS, CLIENT_OPS, "op {op!r} is not a worker op")


def decode_request(line: bytes) -> Request:
    """Decode one request line of either kind of peer, or raise RequestError."""
    request: Request = _any_peer.decode(line)
    return request


def decode_client_request(line: bytes) -> ClientRequest:
    """Decode one line from a client; a worker's op is refused as takod refuses it."""
    request: ClientRequest = _client.decode(line)
    return request


def decode_worker_request(line: bytes) -> WorkerRequest:
    """Decode one line from a worker; a client's op is refused as takod refuses it."""
    request: WorkerRequest = _worker.decode(line)
    return request


def _readable(message: str) -> str:
    """msgspec's message, with our run id pattern said in words instead of as a regex."""
    return message.replace(f"`str` matching regex {RUN_ID_PATTERN!r}", f"a run id ({RUN_ID_RULE})")


def op_name(req: Request) -> str:
    return str(req.__struct_config__.tag)


def ok(req_id: ReqId, **fields: Any) -> bytes:
    return encode({"id": req_id, "ok": True, **fields}) + b"\n"


def fail(req_id: ReqId, error: TakoError) -> bytes:
    reply = {"id": req_id, "ok": False, "error": {"code": error.code, "message": error.message}}
    return encode_safely(reply) + b"\n"
