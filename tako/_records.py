"""The records clients read back: a run, its steps, the result of a signal.

These are the shapes of the run object. takod builds them from its
rows, the socket carries them as JSON, and clients decode them into these
Structs (`run.status` is a plain string such as "waiting").
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec


class StepRecord(msgspec.Struct, kw_only=True):
    key: str
    name: str
    kind: str
    status: str
    result: Any = None
    error: str | None = None
    attempts: int = 0
    started_at: datetime | None = None
    finished_at: datetime | None = None
    wake_at: datetime | None = None


class Run(msgspec.Struct, kw_only=True):
    run_id: str
    workflow: str
    status: str
    payload: Any = None
    result: Any = None
    error: str | None = None
    traceback: str | None = None
    attempts: int = 0
    max_attempts: int = 1
    created_at: datetime
    updated_at: datetime
    wake_at: datetime | None = None
    waiting_for: str | None = None
    cancel_requested: bool = False
    steps: list[StepRecord] | None = None

    @property
    def finished(self) -> bool:
        return self.status in ("completed", "failed", "cancelled")


class Decision(msgspec.Struct, kw_only=True):
    """How an approval request ended: what `step.approval(...)` returns."""

    status: str  # "approved" | "edited" | "rejected" | "timed_out" | "cancelled"
    approved: bool  # True for approved and edited
    value: Any = None  # the data, or the edited value
    by: str | None = None  # the actor whose action decided it
    approved_by: list[str] = []
    reason: str | None = None
    original: Any = None
    decided_at: datetime | None = None


class HistoryEntry(msgspec.Struct, kw_only=True):
    at: datetime
    event: str
    actor: str | None = None
    value: Any = None
    original: Any = None
    reason: str | None = None


class Approval(msgspec.Struct, kw_only=True):
    """An approval request as clients read it (`tako approvals show KEY --json`)."""

    key: str
    run_id: str
    workflow: str
    step: str
    status: str
    summary: str
    data: Any = None
    value: Any = None  # the value approvals count for: `data`, or the latest edit
    digest: str = ""  # hex SHA-256 of `value`: pass it as `seen` to decide what you saw
    schema: dict[str, Any] | None = None  # the JSON Schema of the request's `type=`, if any
    approvers: list[str] | None = None
    required: int = 1
    approved_by: list[str] = []
    decision: dict[str, Any] | None = None
    created_at: datetime
    deadline_at: datetime | None = None
    history: list[HistoryEntry] | None = None


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


def ms_to_datetime(ms: int | None) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, UTC)
