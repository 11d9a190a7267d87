"""What a run's failure becomes on the wire: messages, tracebacks and results made safe.

Everything here handles user data (exception messages, file names, returned
values) on its way into a message to takod. None of it may raise on hostile
input: a failure to describe one run's failure would otherwise escape into
the worker and take every run in flight with it.
"""

from __future__ import annotations

import importlib.util
import os
import traceback
from typing import Any

import msgspec

from tako._protocol import non_finite, safe_text


def _folders(*names: str) -> tuple[str, ...]:
    """The folders of these packages, found without importing them: importing trio alone
    costs a cold asyncio worker ~130 ms, on the path of every resume from zero."""
    found = []
    for name in names:
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.origin:
            found.append(os.path.dirname(spec.origin) + os.sep)
    return tuple(found)


# Frames of these packages at the top of a traceback are how the worker reached the
# user's code: the event loop, the thread pool, the worker and the step machinery (the
# trio runtime's thread hop goes through outcome).
_INTERNAL = _folders("tako", "anyio", "asyncio", "concurrent.futures", "trio", "outcome")


class Unencodable(Exception):
    """A value JSON cannot hold faithfully; the message names it and says why."""


def describe(exc: BaseException, timeout: float | None = None) -> str:
    """`Type: message` of an exception, as valid UTF-8 whatever the message holds."""
    if isinstance(exc, TimeoutError) and timeout is not None:
        return f"TimeoutError: step took longer than its timeout of {timeout:g}s"
    return f"{safe_text(type(exc).__name__)}: {message(exc)}"


def message(exc: BaseException) -> str:
    """`str(exc)` as valid UTF-8, even when its `__str__` raises."""
    try:
        return safe_text(str(exc))
    except Exception as inner:
        return f"<its message could not be shown: {type(inner).__name__}>"


def user_traceback(exc: BaseException) -> str:
    """The traceback of `exc` (and of its causes) from the user's first frame on: the
    frames of the worker and the event loop above it are dropped, as is anything that
    cannot be encoded. Falls back to the exception line if formatting itself fails."""
    try:
        te = traceback.TracebackException.from_exception(exc)
        seen: set[int] = set()
        chain: list[traceback.TracebackException | None] = [te]
        while chain:
            item = chain.pop()
            if item is None or id(item) in seen:
                continue
            seen.add(id(item))
            item.stack = _from_user_code(item.stack)
            chain += [item.__cause__, item.__context__]
        return safe_text("".join(te.format()))
    except Exception:
        return describe(exc) + "\n"


def _from_user_code(stack: traceback.StackSummary) -> traceback.StackSummary:
    """`stack` without its leading internal frames (all of it when none is the user's)."""
    for n, frame in enumerate(stack):
        if not frame.filename.startswith(_INTERNAL):
            return traceback.StackSummary.from_list(stack[n:])
    return stack


def encode_value(what: str, name: str, value: Any, max_payload: int) -> bytes:
    """The JSON of a step's or a workflow's result; Unencodable (naming `what`, `name`
    and the type) when JSON cannot hold it faithfully: an unsupported type, text with
    lone surrogates, NaN or infinity (which would silently become null), or too many
    bytes. On the hot path: nothing but the encoding unless something is wrong."""
    try:
        raw = msgspec.json.encode(value)
    except (TypeError, ValueError, msgspec.EncodeError) as exc:  # ValueError: surrogates
        problem = f", which JSON cannot encode: {describe(exc)}"
    except RecursionError:
        problem = " nested too deeply for JSON"
    else:
        if len(raw) > max_payload:
            raise Unencodable(
                f"{what} {name!r} returned {len(raw)} bytes of JSON, over the "
                f"{max_payload}-byte limit ([runs] max_payload in tako.toml)"
            )
        if b"null" not in raw or not non_finite(value):
            return raw
        problem = " holding NaN or infinity, which JSON cannot encode (it would be stored as null)"
    kind = safe_text(type(value).__name__)
    raise Unencodable(f"{what} {name!r} returned a {kind}{problem}")
