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

    @property
    def max_attempts(self) -> int:
        return self.retries + 1


@overload
def workflow(name: F, /) -> F: ...
@overload
def workflow(
    name: str | None = None, /, *, retries: int = 3, timeout: Duration | None = None
) -> Callable[[F], F]: ...


def workflow(name: Any = None, /, *, retries: int = 3, timeout: Duration | None = None) -> Any:
    """Register `async def handler(payload, step)` as a workflow.

    `@workflow`, `@workflow()` and `@workflow("name", retries=..., timeout=...)` all work.
    """
    if callable(name):
        return _mark(name, None, retries, timeout)

    def decorate(fn: F) -> F:
        return _mark(fn, name, retries, timeout)

    return decorate


def _mark(fn: F, name: str | None, retries: int, timeout: Duration | None) -> F:
    if not inspect.iscoroutinefunction(fn):
        raise TypeError(
            f"@workflow handler {fn.__qualname__} must be `async def handler(payload, step)`"
        )
    if not isinstance(retries, int) or retries < 0:
        raise ValueError(f"@workflow retries must be an integer >= 0, got {retries!r}")
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
