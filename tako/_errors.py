"""Every error tako raises, each with a stable `code`.

Errors that cross the socket travel as `{"code", "message"}` and are rebuilt
on the client side from the code (see `error_from_wire`), never by matching
message text. A class docstring is its default message.
"""

from __future__ import annotations

from typing import Any


class TakoError(Exception):
    """Something went wrong in tako."""

    code: str = "internal"  # stable across the wire; an instance may carry an unknown one

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or self.code).strip())

    @property
    def message(self) -> str:
        return str(self.args[0])


class InvalidRequest(TakoError):
    """The request is malformed or has a field of the wrong type."""

    code = "invalid"


class BadJson(InvalidRequest):
    """The request line is not valid JSON."""

    code = "bad_json"


class UnknownOp(InvalidRequest):
    """The request names an operation that does not exist."""

    code = "unknown_op"


class PayloadTooLarge(TakoError):
    """A payload, result or request line is over the configured size limit."""

    code = "payload_too_large"


class LineTooLarge(PayloadTooLarge):
    """The request line is over the socket's size limit; the rest of it was discarded."""

    code = "too_large"


class UnknownWorkflow(TakoError):
    """No workflow with that name is defined in the app."""

    code = "unknown_workflow"


class RunNotFound(TakoError):
    """No run with that id exists."""

    code = "not_found"


class ApprovalNotFound(TakoError):
    """No approval request with that key exists."""

    code = "approval_not_found"


class NotAllowed(TakoError):
    """The run is not in a state that allows this operation."""

    code = "not_allowed"


class StaleClaim(TakoError):
    """This worker no longer holds the run (its claim token is stale); the write was refused."""

    code = "stale"


class Unauthorized(TakoError):
    """No credentials, or credentials that match no token."""

    code = "unauthorized"


class Forbidden(TakoError):
    """These credentials may not do this (a scope is missing, or not an approver)."""

    code = "forbidden"


class LinkTampered(TakoError):
    """This approval link is not one tako signed: it was altered or cut short."""

    code = "link_tampered"


class LinkExpired(TakoError):
    """This approval link has expired."""

    code = "link_expired"


class Stale(TakoError):
    """The request's value changed since it was shown; the decision was not applied."""

    code = "stale"


class StorageError(TakoError):
    """The database refused the write (disk full or read-only); nothing was changed."""

    code = "storage"


class SupervisorUnavailable(TakoError):
    """The supervisor cannot be reached."""

    code = "unavailable"

    def __init__(self, message: str | None = None, *, socket_path: str = "") -> None:
        if message is None:
            message = (
                f"cannot reach the tako supervisor at {socket_path or '(no socket)'}: "
                "is it running? Start it with `tako dev` in your app folder."
            )
        super().__init__(message)
        self.socket_path = socket_path


class NonRetryable(TakoError):
    """Raise in a workflow to fail the run at once, without retries."""

    code = "non_retryable"


class StepFailed(TakoError):
    """A step failed after all its attempts; the handler may catch this."""

    code = "step_failed"

    def __init__(self, message: str | None = None, *, step: str = "") -> None:
        super().__init__(message)
        self.step = step


class ChildFailed(TakoError):
    """A child run (`step.invoke`) failed; its error is in the message."""

    code = "child_failed"

    def __init__(self, message: str | None = None, *, run_id: str = "") -> None:
        super().__init__(message)
        self.run_id = run_id


class ChildCancelled(TakoError):
    """A child run (`step.invoke`) was cancelled."""

    code = "child_cancelled"

    def __init__(self, message: str | None = None, *, run_id: str = "") -> None:
        super().__init__(message)
        self.run_id = run_id


class ApprovalRejected(TakoError):
    """A gated call was not approved (rejected, timed out or cancelled)."""

    code = "approval_rejected"

    def __init__(self, message: str | None = None, *, decision: Any = None) -> None:
        super().__init__(message)
        self.decision = decision


class RunFailed(TakoError):
    """The run failed."""

    code = "run_failed"

    def __init__(self, message: str | None = None, *, run: Any = None) -> None:
        super().__init__(message)
        self.run = run


class RunCancelled(TakoError):
    """The run was cancelled."""

    code = "run_cancelled"

    def __init__(self, message: str | None = None, *, run: Any = None) -> None:
        super().__init__(message)
        self.run = run


_BY_CODE: dict[str, type[TakoError]] = {
    cls.code: cls
    for cls in (
        InvalidRequest,
        BadJson,
        UnknownOp,
        PayloadTooLarge,
        LineTooLarge,
        UnknownWorkflow,
        RunNotFound,
        ApprovalNotFound,
        NotAllowed,
        StorageError,
        Unauthorized,
        Forbidden,
        LinkTampered,
        LinkExpired,
        Stale,  # `stale` reaches clients only as this; workers read StaleClaim by its code
    )
}


def error_from_wire(code: str, message: str) -> TakoError:
    """Rebuild the typed error a reply's `{"code", "message"}` stands for."""
    cls = _BY_CODE.get(code)
    if cls is None:  # a code this client does not know: keep it, so callers can still act on it
        error = TakoError(message)
        error.code = code
        return error
    return cls(message)
