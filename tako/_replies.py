"""takod's replies, one Struct per shape, and the one way to read a reply line.

A reply that holds runs or approvals is generic in their form: the public
client decodes `RunReply[Run]` (decoded values, datetimes), the CLI
`RunReply[RunView]` (raw JSON and ISO text, so `--json` prints exactly what
takod sent). A failed request is `{"ok": false, "error": {code, message}}`
whatever the op; `decode_reply` turns it into the typed error.
"""

from __future__ import annotations

import functools
from typing import Any, Generic, TypeVar

import msgspec

from tako._errors import error_from_wire
from tako._records import LoadError, WorkflowInfo

R = TypeVar("R")  # a run: Run, or RunView
A = TypeVar("A")  # an approval request: Approval, or ApprovalView
T = TypeVar("T")  # a token as listed: TokenInfo, or TokenRow
ReplyT = TypeVar("ReplyT", bound="Reply")


class Reply(msgspec.Struct, kw_only=True):
    """What every reply carries: the request's id and whether it succeeded. takod
    encodes these Structs (`encode_reply`); clients decode them (`decode_reply`)."""

    id: Any = None
    ok: bool = True


class StartReply(Reply, kw_only=True):
    run_id: str
    status: str
    deduplicated: bool


class SignalReply(Reply, kw_only=True):
    delivered: int
    kept: bool


class RunReply(Reply, Generic[R], kw_only=True):
    """`get_run`, `cancel`, `retry`."""

    run: R


class RunsReply(Reply, Generic[R], kw_only=True):
    runs: list[R]


class WaitReply(Reply, Generic[R], kw_only=True):
    finished: bool
    run: R


class SupervisorRow(msgspec.Struct, kw_only=True):
    """A supervisor serving the app (several share a PostgreSQL database)."""

    host: str
    pid: int
    workers: int
    since: str  # ISO 8601: when it started


class ScheduleRow(msgspec.Struct, kw_only=True):
    """A cron schedule: its workflow's next tick and the last it started."""

    workflow: str
    schedule: str
    timezone: str
    catch_up: str
    next_tick: str  # ISO 8601
    last_tick: str | None  # ISO 8601; None until a tick has started a run


class SchedulesReply(Reply, kw_only=True):
    schedules: list[ScheduleRow]


class MetricsReply(Reply, kw_only=True):
    text: str  # the Prometheus text exposition format, version 0.0.4


class StatusReply(Reply, kw_only=True):
    supervisor: str
    pid: int | None
    workers: int
    runs: dict[str, int]
    next_wake_at: str | None
    app: str | None = None
    database: str | None = None
    # PostgreSQL only: every supervisor alive on the database
    supervisors: list[SupervisorRow] | msgspec.UnsetType = msgspec.UNSET

    def fields(self) -> dict[str, Any]:
        """The status as `tako status --json` prints it: the reply without `id` and `ok`."""
        return {
            f: getattr(self, f)
            for f in self.__struct_fields__
            if f not in ("id", "ok") and getattr(self, f) is not msgspec.UNSET
        }


class WorkflowsReply(Reply, kw_only=True):
    workflows: list[WorkflowInfo]
    errors: list[LoadError]


class ApprovalReply(Reply, Generic[A], kw_only=True):
    """`get_approval`, `approve`, `reject`, `cancel_approval`."""

    approval: A


class ApprovalsReply(Reply, Generic[A], kw_only=True):
    approvals: list[A]


class LinksReply(Reply, kw_only=True):
    links: dict[str, dict[str, str]]


class NewTokenReply(Reply, kw_only=True):
    name: str
    token: str
    scopes: list[str]


class TokenRow(msgspec.Struct, kw_only=True):
    """A token as takod lists it (`created_at` as ISO 8601 text), never the token."""

    name: str
    scopes: list[str]
    created_at: str


class TokensReply(Reply, Generic[T], kw_only=True):
    tokens: list[T]


class RevokedReply(Reply, kw_only=True):
    revoked: bool


class PrunedReply(Reply, kw_only=True):
    pruned: int


class LinkReply(Reply, Generic[A], kw_only=True):
    """`open_link`: whose signed link it is, until when, and its request."""

    key: str
    approver: str
    expires_at: str
    approval: A


class WatchRunReply(Reply, Generic[R], kw_only=True):
    changed: bool
    fingerprint: str
    run: R


class WatchApprovalReply(Reply, Generic[A], kw_only=True):
    changed: bool
    fingerprint: str
    approval: A


class AccessReply(Reply, kw_only=True):
    """Who a token is (`name` None: no token given) and how many tokens exist."""

    name: str | None
    scopes: list[str]
    tokens: int


class _WireError(msgspec.Struct):
    code: Any = None
    message: Any = None


class _Failure(msgspec.Struct):
    ok: bool = False
    error: _WireError | None = None


_failure = msgspec.json.Decoder(_Failure)


@functools.cache
def _decoder(reply: Any) -> msgspec.json.Decoder[Any]:
    return msgspec.json.Decoder(reply)


def decode_reply(line: bytes, reply: type[ReplyT]) -> ReplyT:
    """The reply line as `reply`, or the typed error of a failed request.

    A failure fails the reply's own shape (its fields are missing), so a
    success is decoded once; only a failure is read a second time."""
    try:
        decoded: ReplyT = _decoder(reply).decode(line)
    except msgspec.ValidationError:
        if _failure.decode(line).ok:
            raise  # a success of another shape: a client and takod that disagree
    else:
        if decoded.ok:
            return decoded
    error = _failure.decode(line).error or _WireError()
    raise error_from_wire(str(error.code), str(error.message))


_encoder = msgspec.json.Encoder()


def encode_reply(reply: Reply) -> bytes:
    """One reply line, as takod writes it."""
    return _encoder.encode(reply) + b"\n"
