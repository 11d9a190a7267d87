"""`@workflow`: marks an async function as a workflow handler.

The decorator only attaches a `WorkflowDef` to the function; the loader finds
them by scanning each imported module. There is no global registry, so
loading the same app twice (reload, tests) never sees stale entries.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import typing
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple, TypeVar, cast, overload

import msgspec

from tako import _cron as cron
from tako._cron import CATCH_UPS, CatchUp
from tako._durations import Duration, parse_duration
from tako._records import NOTIFY_WORKFLOW, RUN_ID_PATTERN, RUN_ID_RULE

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
    key: Callable[[Any], Any] | None = None  # the concurrency key of a payload
    key_concurrency: int | None = None  # at most this many running per key
    schedule: str | None = None  # cron: one run per tick
    timezone: str = "UTC"
    catch_up: str = "latest"

    @property
    def max_attempts(self) -> int:
        return self.retries + 1


def _check_key(options: Options) -> None:
    """`key=` and `key_concurrency=` go together: a function of the payload, and a limit."""
    if (options.key is None) != (options.key_concurrency is None):
        raise ValueError("@workflow key= and key_concurrency= go together: give both or neither")
    limit = options.key_concurrency
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"@workflow key_concurrency must be an integer >= 1, got {limit!r}")
    if options.key is not None and not callable(options.key):
        raise ValueError(f"@workflow key must be a function of the payload, got {options.key!r}")


def _check_schedule(name: str, options: Options) -> None:
    """A scheduled workflow's runs are named `<workflow>@<tick>`: its name must be valid in
    a run id, and its schedule, time zone and catch-up must be usable."""
    if not re.match(RUN_ID_PATTERN, f"{name}@2026-01-01T00:00:00Z"):
        raise ValueError(
            f"scheduled workflow {name!r}: its name is part of its runs' ids, so it may"
            f" only hold {RUN_ID_RULE} (and be at most 107 characters)"
        )
    if options.catch_up not in CATCH_UPS:
        raise ValueError(
            f"catch_up must be one of {', '.join(CATCH_UPS)}, got {options.catch_up!r}"
        )
    cron.check(options.schedule or "", options.timezone)


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
    key: Callable[[Any], Any] | None = None,
    key_concurrency: int | None = None,
    schedule: str | None = None,
    timezone: str = "UTC",
    catch_up: CatchUp = "latest",
) -> Callable[[F], F]: ...


def workflow(
    name: Any = None,
    /,
    *,
    retries: int = 3,
    timeout: Duration | None = None,
    concurrency: int | None = None,
    key: Callable[[Any], Any] | None = None,
    key_concurrency: int | None = None,
    schedule: str | None = None,
    timezone: str = "UTC",
    catch_up: CatchUp = "latest",
) -> Any:
    """Register `async def handler(payload, step)` as a workflow.

    `@workflow`, `@workflow()` and `@workflow("name", retries=..., timeout=...)` all work.
    `concurrency=N`: at most N of its runs execute at once (sleeping and waiting ones do
    not count); the others stay pending, in start order.
    `schedule="0 9 * * MON"` (cron, in `timezone`): one run per tick, with the run id
    `<workflow>@<tick, ISO 8601 UTC>`; ticks missed while nothing ran: `catch_up`
    "latest" (only the most recent), "all" or "none".
    """
    options = Options(
        retries, timeout, concurrency, schedule, timezone, catch_up, key, key_concurrency
    )
    if callable(name):
        return _mark(name, None, options)

    def decorate(fn: F) -> F:
        return _mark(fn, name, options)

    return decorate


class Options(NamedTuple):
    retries: int
    timeout: Duration | None
    concurrency: int | None
    schedule: str | None
    timezone: str
    catch_up: str
    key: Callable[[Any], Any] | None = None
    key_concurrency: int | None = None


def _mark(fn: F, name: str | None, options: Options) -> F:
    retries, timeout, concurrency = options.retries, options.timeout, options.concurrency
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
    if options.schedule is not None:
        _check_schedule(wf_name, options)
    _check_key(options)
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
            schedule=options.schedule,
            timezone=options.timezone,
            catch_up=options.catch_up,
            key=options.key,
            key_concurrency=options.key_concurrency,
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
