"""tako: durable workflows with human approvals, for Python.

Write workflows with `@workflow` and `Step`; start and steer runs with the
functions below (blocking, usable from any thread or framework) or with
`Client` / `AsyncClient`. Everything public is re-exported here.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from tako._durations import Duration, parse_duration
from tako._errors import (
    ApprovalNotFound,
    ApprovalRejected,
    ChildCancelled,
    ChildFailed,
    Forbidden,
    InvalidRequest,
    LinkExpired,
    LinkTampered,
    NonRetryable,
    NotAllowed,
    PayloadTooLarge,
    RunCancelled,
    RunFailed,
    RunNotFound,
    Stale,
    StepFailed,
    StorageError,
    SupervisorUnavailable,
    TakoError,
    Unauthorized,
    UnknownWorkflow,
)
from tako._records import (
    Approval,
    ApprovalEvent,
    Decision,
    Event,
    Run,
    SignalResult,
    StepRecord,
)
from tako.worker_runtime.registry import notifier, workflow
from tako.worker_runtime.step import Step

if TYPE_CHECKING:
    from tako._client import AsyncClient, Client, StartResult

__all__ = [
    "Approval",
    "ApprovalEvent",
    "ApprovalNotFound",
    "ApprovalRejected",
    "AsyncClient",
    "ChildCancelled",
    "ChildFailed",
    "Client",
    "Decision",
    "Duration",
    "Event",
    "Forbidden",
    "InvalidRequest",
    "LinkExpired",
    "LinkTampered",
    "NonRetryable",
    "NotAllowed",
    "PayloadTooLarge",
    "Run",
    "RunCancelled",
    "RunFailed",
    "RunNotFound",
    "SignalResult",
    "Stale",
    "StartResult",
    "Step",
    "StepFailed",
    "StepRecord",
    "StorageError",
    "SupervisorUnavailable",
    "TakoError",
    "Unauthorized",
    "UnknownWorkflow",
    "approve",
    "cancel",
    "cancel_approval",
    "get_approval",
    "get_run",
    "list_approvals",
    "list_runs",
    "notifier",
    "parse_duration",
    "reject",
    "result",
    "retry",
    "signal",
    "start",
    "workflow",
]

_LAZY = {"AsyncClient", "Client", "StartResult"}


def __getattr__(name: str) -> Any:
    """The clients load on first use: a worker process, which imports `tako` for
    `@workflow` and `Step`, never pays for them (a cold start is on the resume path)."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module("tako._client"), name)
    raise AttributeError(f"module 'tako' has no attribute {name!r}")


_clients: dict[str, Client] = {}
_clients_lock = threading.Lock()


def _default_client() -> Client:
    """The client for the socket the environment points at (one per socket path)."""
    from tako._client import Client

    probe = Client()
    key = str(probe.socket_path)
    with _clients_lock:
        return _clients.setdefault(key, probe)


def start(
    workflow: str, payload: Any = None, *, run_id: str | None = None, delay: Duration | None = None
) -> str:
    return _default_client().start(workflow, payload, run_id=run_id, delay=delay)


def signal(
    event: str, payload: Any = None, *, run_id: str | None = None, ttl: Duration | None = None
) -> SignalResult:
    return _default_client().signal(event, payload, run_id=run_id, ttl=ttl)


def get_run(run_id: str) -> Run:
    return _default_client().get_run(run_id)


def result(run_id: str, *, timeout: Duration | None = None) -> Any:
    return _default_client().result(run_id, timeout=timeout)


def cancel(run_id: str) -> Run:
    return _default_client().cancel(run_id)


def retry(run_id: str) -> Run:
    return _default_client().retry(run_id)


def approve(key: str, *, by: str, value: Any = None, decision_id: str | None = None) -> Approval:
    """Approve; pass `value` to approve an edited value (None means: as requested)."""
    if value is None:
        return _default_client().approve(key, by=by, decision_id=decision_id)
    return _default_client().approve(key, by=by, value=value, decision_id=decision_id)


def reject(key: str, *, by: str, reason: str, decision_id: str | None = None) -> Approval:
    return _default_client().reject(key, by=by, reason=reason, decision_id=decision_id)


def cancel_approval(key: str, *, by: str, reason: str | None = None) -> Approval:
    return _default_client().cancel_approval(key, by=by, reason=reason)


def list_approvals(
    approver: str | None = None, workflow: str | None = None, limit: int = 100
) -> list[Approval]:
    return _default_client().list_approvals(approver=approver, workflow=workflow, limit=limit)


def get_approval(key: str) -> Approval:
    return _default_client().get_approval(key)


def list_runs(
    status: str | None = None, workflow: str | None = None, limit: int = 100
) -> list[Run]:
    return _default_client().list_runs(status=status, workflow=workflow, limit=limit)
