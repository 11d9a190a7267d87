"""`@workflow`: marks an async function as a workflow handler.

The decorator only attaches a `WorkflowDef` to the function; the loader finds
them by scanning each imported module. There is no global registry, so
loading the same app twice (reload, tests) never sees stale entries.
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast, overload

import msgspec

from tako._durations import Duration, parse_duration
from tako._records import NOTIFY_WORKFLOW

ATTR = "__tako_workflow__"
Handler = Callable[[Any, Any], Awaitable[Any]]
F = TypeVar("F", bound=Handler)


@dataclasses.dataclass(frozen=True)
class WorkflowDef:
    name: str
    fn: Handler
    retries: int
    timeout: float | None
    file: str
    line: int
    payload_type: Any = None
    concurrency: int | None = None  # at most this many of its runs executing at once

    @property
    def max_attempts(self) -> int:
        return self.retries + 1


NOTIFIER_ATTR = "__tako_notifier__"
N = TypeVar("N", bound=Callable[..., Any])


def notifier(fn: N) -> N:
    """Mark `fn(event: tako.ApprovalEvent)` (sync or async) to receive approval events.

    Each event reaches every notifier at least once, in order per request, as a
    step of a run of the built-in `tako.notify` workflow: a notifier that raises
    is retried with backoff, and never blocks or fails the run that asked."""
    setattr(fn, NOTIFIER_ATTR, True)
    return fn


def notify_workflow(notifiers: list[Callable[..., Any]], file: str) -> WorkflowDef:
    """The built-in workflow whose runs deliver one approval event to every notifier."""
    from tako._records import ApprovalEvent

    async def deliver(payload: Any, step: Any) -> None:
        event = msgspec.convert(payload, ApprovalEvent, strict=False)
        for fn in notifiers:
            name = f"{fn.__module__}.{fn.__qualname__}"
            await step.run(name, lambda fn=fn: fn(event), retries=2)

    return WorkflowDef(name=NOTIFY_WORKFLOW, fn=deliver, retries=5, timeout=None, file=file, line=0)


@overload
def workflow(name: F, /) -> F: ...
@overload
def workflow(
    name: str | None = None,
    /,
    *,
    retries: int = 3,
    timeout: Duration | None = None,
    concurrency: int | None = None,
) -> Callable[[F], F]: ...


def workflow(
    name: Any = None,
    /,
    *,
    retries: int = 3,
    timeout: Duration | None = None,
    concurrency: int | None = None,
) -> Any:
    """Register `async def handler(payload, step)` as a workflow.

    `@workflow`, `@workflow()` and `@workflow("name", retries=..., timeout=...)` all work.
    `concurrency=N`: at most N of its runs execute at once (sleeping and waiting ones do
    not count); the others stay pending, in start order.
    """
    if callable(name):
        return _mark(name, None, retries, timeout, concurrency)

    def decorate(fn: F) -> F:
        return _mark(fn, name, retries, timeout, concurrency)

    return decorate


def _mark(
    fn: F, name: str | None, retries: int, timeout: Duration | None, concurrency: int | None
) -> F:
    if not inspect.iscoroutinefunction(fn):
        raise TypeError(
            f"@workflow handler {fn.__qualname__} must be `async def handler(payload, step)`"
        )
    if not isinstance(retries, int) or retries < 0:
        raise ValueError(f"@workflow retries must be an integer >= 0, got {retries!r}")
    if concurrency is not None and (
        isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1
    ):
        raise ValueError(f"@workflow concurrency must be an integer >= 1, got {concurrency!r}")
    wf_name = name or fn.__name__.replace("_", "-")
    if not 1 <= len(wf_name) <= 256:
        raise ValueError(f"workflow name must be 1 to 256 characters, got {wf_name!r}")
    code = fn.__code__
    setattr(
        fn,
        ATTR,
        WorkflowDef(
            name=wf_name,
            fn=fn,
            retries=retries,
            timeout=parse_duration(timeout) if timeout is not None else None,
            file=code.co_filename,
            line=code.co_firstlineno,
            payload_type=_payload_type(fn),
            concurrency=concurrency,
        ),
    )
    return cast(F, fn)  # iscoroutinefunction() narrowed its type above


def _payload_type(fn: Handler) -> Any:
    """The first parameter's annotation when it is a type msgspec should convert to."""
    params = list(inspect.signature(fn).parameters.values())
    if not params:
        return None
    try:
        hints = typing.get_type_hints(fn)
    except Exception:
        return None
    hint = hints.get(params[0].name)
    if isinstance(hint, type) and (
        issubclass(hint, msgspec.Struct)
        or dataclasses.is_dataclass(hint)
        or typing.is_typeddict(hint)
    ):
        return hint
    return None
