"""The objects of the wire, defined once: a run, its steps, an approval, a decision.

takod builds them from what it stores and the socket carries them as JSON;
clients decode the same shapes. Each is generic in how a JSON value and a
moment are held: takod keeps values as the raw JSON it stored
(`msgspec.Raw`) and moments as ISO 8601 text, clients get decoded values and
aware datetimes. The public names (`Run`, `StepRecord`, `Approval`, ...) are
the decoded forms; `RunView`, `StepView`, ... are takod's.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Generic, TypeVar

import msgspec

J = TypeVar("J")  # a JSON value: msgspec.Raw in takod, the decoded value in clients
W = TypeVar("W")  # a moment: ISO 8601 text in takod, an aware datetime in clients
S = TypeVar("S")  # the step object of a run
H = TypeVar("H")  # the history entry of an approval
# JSON null as raw text. msgspec cannot hold `Raw` in a union, so takod's forms declare
# their raw fields as plain `msgspec.Raw` defaulting to this instead of `Raw | None`.
NULL = msgspec.Raw(b"null")
# A run id: what `start(run_id=...)`, the CLI and the HTTP API accept
RUN_ID_PATTERN = r"^[A-Za-z0-9._:@-]{1,128}(?!\n)$"  # `$` alone would allow a final newline
RUN_ID_RULE = "1 to 128 of the characters A-Z a-z 0-9 . _ : @ -"


class RunStatus(StrEnum):
    """Where a run stands. Parked runs (sleeping, waiting) hold no worker."""

    PENDING = "pending"
    RUNNING = "running"
    SLEEPING = "sleeping"
    WAITING = "waiting"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


FINISHED = frozenset({RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED})
PARKED = frozenset({RunStatus.SLEEPING, RunStatus.WAITING})
STATUSES = tuple(s.value for s in RunStatus)  # plain text, in the order a run goes through


class StepObject(msgspec.Struct, Generic[J, W], kw_only=True):
    key: str
    name: str
    kind: str
    status: str
    result: J | None = None
    error: str | None = None
    attempts: int = 0
    started_at: W | None = None
    finished_at: W | None = None
    wake_at: W | None = None


class RunObject(msgspec.Struct, Generic[J, W, S], kw_only=True):
    run_id: str
    workflow: str
    status: str
    payload: J | None = None
    result: J | None = None
    error: str | None = None
    traceback: str | None = None
    attempts: int = 0
    max_attempts: int = 1
    created_at: W
    updated_at: W
    wake_at: W | None = None
    waiting_for: str | None = None
    cancel_requested: bool = False
    steps: list[S] | None = None
    parent_run_id: str | None = None  # the run that started this one (step.invoke, start_child)
    children: list[ChildRun] | None = None  # runs this one started, oldest first (get_run)

    @property
    def finished(self) -> bool:
        return self.status in FINISHED


class ChildRun(msgspec.Struct, kw_only=True):
    """A run a run started (`step.invoke`, `step.start_child`), as its parent lists it."""

    run_id: str
    workflow: str
    status: str


class StepRecord(StepObject[Any, datetime], kw_only=True):
    """One step of a run, as clients read it."""


class Run(RunObject[Any, datetime, StepRecord], kw_only=True):
    """A run as clients read it (`run.status` is a plain string such as "waiting")."""


class StepView(StepObject[msgspec.Raw, str], kw_only=True):
    """A step as takod sends it."""

    result: msgspec.Raw = NULL


class RunView(RunObject[msgspec.Raw, str, StepView], kw_only=True):
    """A run as takod sends it: lists of runs leave `steps` out."""

    steps: list[StepView] | msgspec.UnsetType = msgspec.UNSET  # type: ignore[assignment]
    # left out unless the run has them, so the run object of a plain run is unchanged
    parent_run_id: str | msgspec.UnsetType = msgspec.UNSET  # type: ignore[assignment]
    children: list[ChildRun] | msgspec.UnsetType = msgspec.UNSET  # type: ignore[assignment]

    payload: msgspec.Raw = NULL
    result: msgspec.Raw = NULL


class DecisionObject(msgspec.Struct, Generic[J, W], kw_only=True):
    """How an approval request ended."""

    status: str  # "approved" | "edited" | "rejected" | "timed_out" | "cancelled"
    approved: bool  # True for approved and edited
    value: J | None = None  # the data, or the edited value
    by: str | None = None  # the actor whose action decided it
    approved_by: list[str] = []
    reason: str | None = None
    original: J | None = None
    decided_at: W | None = None


class Decision(DecisionObject[Any, datetime], kw_only=True):
    """How an approval request ended: what `step.approval(...)` returns."""


class Event(msgspec.Struct, frozen=True):
    """The signal that ended a `step.wait_for_any`: its event name and its payload."""

    name: str
    payload: Any = None


class StoredDecision(DecisionObject[msgspec.Raw, int], kw_only=True):
    """A decision as takod stores it and hands it to the worker (decided_at in ms)."""

    value: msgspec.Raw = NULL
    original: msgspec.Raw = NULL


class HistoryObject(msgspec.Struct, Generic[J, W], kw_only=True):
    at: W
    event: str
    actor: str | None = None
    value: J | None = None
    original: J | None = None
    reason: str | None = None


class HistoryEntry(HistoryObject[Any, datetime], kw_only=True):
    """One event in an approval request's history."""


class HistoryView(HistoryObject[msgspec.Raw, str], kw_only=True):
    """A history entry as takod sends it."""

    value: msgspec.Raw = NULL
    original: msgspec.Raw = NULL


class ApprovalObject(msgspec.Struct, Generic[J, W, H], kw_only=True):
    key: str
    run_id: str
    workflow: str
    step: str
    status: str
    summary: str
    data: J | None = None
    value: J | None = None  # the value approvals count for: `data`, or the latest edit
    digest: str = ""  # hex SHA-256 of `value`: pass it as `seen` to decide what you saw
    schema: J | None = None  # the JSON Schema of the request's `type=`, if any
    approvers: list[str] | None = None
    required: int = 1
    approved_by: list[str] = []
    decision: dict[str, Any] | None = None
    created_at: W
    deadline_at: W | None = None
    history: list[H] | None = None


class Approval(ApprovalObject[Any, datetime, HistoryEntry], kw_only=True):
    """An approval request as clients read it (`tako approvals show KEY --json`)."""


class ApprovalView(ApprovalObject[msgspec.Raw, str, HistoryView], kw_only=True):
    """An approval request as takod sends it: lists leave `history` out."""

    history: list[HistoryView] | msgspec.UnsetType = msgspec.UNSET  # type: ignore[assignment]

    data: msgspec.Raw = NULL
    value: msgspec.Raw = NULL
    schema: msgspec.Raw = NULL


class ApprovalEvent(msgspec.Struct, kw_only=True):
    """What `@tako.notifier` functions receive: something happened to an approval request.

    `type` is "requested", "reminder", "escalated" or "resolved"; `id` is stable
    (`<key>#<n>`), so a notifier that may see an event twice can deduplicate on it."""

    id: str
    type: str
    at: datetime
    key: str
    run_id: str
    workflow: str
    step: str
    status: str
    summary: str
    data: Any = None
    approvers: list[str] | None = None
    required: int = 1
    approved_by: list[str] = []
    decision: dict[str, Any] | None = None
    deadline_at: datetime | None = None
    # signed approval links per approver ("*": anyone), for requested, reminder, escalated
    links: dict[str, dict[str, str]] | None = None


class TokenInfo(msgspec.Struct, kw_only=True):
    """An API token as `tako tokens list` shows it (never the token itself)."""

    name: str
    scopes: list[str]
    created_at: datetime


class NewToken(msgspec.Struct, kw_only=True):
    """A token just created: `token` is shown this once and never stored."""

    name: str
    token: str
    scopes: list[str]


class SignalResult(msgspec.Struct):
    delivered: int
    kept: bool


class WorkflowInfo(msgspec.Struct, kw_only=True):
    name: str
    file: str
    retries: int
    timeout: float | None = None
    # a payload its handler accepts, from its payload type; left out when it has none
    payload_example: Any | msgspec.UnsetType = msgspec.UNSET
    # at most this many runs executing at once; left out when unlimited
    concurrency: int | msgspec.UnsetType = msgspec.UNSET
    # at most this many per concurrency key (the workflow's `key=`); left out when none
    key_concurrency: int | msgspec.UnsetType = msgspec.UNSET
    # cron schedule (one run per tick), its time zone and catch-up; left out when none
    schedule: str | msgspec.UnsetType = msgspec.UNSET
    timezone: str | msgspec.UnsetType = msgspec.UNSET
    catch_up: str | msgspec.UnsetType = msgspec.UNSET


class LoadError(msgspec.Struct, kw_only=True):
    file: str
    line: int | None
    message: str


class Registry(msgspec.Struct, kw_only=True):
    """What `worker_runtime --describe` reports: the app's workflows, its broken files, and
    what each file printed while it was imported (file -> text)."""

    workflows: list[WorkflowInfo] = []
    errors: list[LoadError] = []
    output: dict[str, str] = {}

    def of_the_app(self) -> list[WorkflowInfo]:
        """The workflows the app defines, without tako's own (`tako.notify`, which
        delivers approval events to `@tako.notifier` functions)."""
        return [w for w in self.workflows if not w.name.startswith(BUILTIN_PREFIX)]


BUILTIN_PREFIX = "tako."  # the names of workflows tako itself defines
NOTIFY_WORKFLOW = "tako.notify"  # the built-in workflow that delivers events to notifiers


def iso(ms: int | None) -> str | None:
    """A moment (ms since the epoch) as the wire carries it: ISO 8601 UTC, in ms."""
    if ms is None:
        return None
    return (
        datetime.fromtimestamp(ms / 1000, UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


def ms_to_datetime(ms: int | None) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, UTC)
