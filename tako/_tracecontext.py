"""The caller's trace context, for `start` to carry into the run (OpenTelemetry, if
installed: the `otel` extra).

Imported lazily on the first start, so a client without OpenTelemetry pays one
check per start and nothing at import time.
"""

from __future__ import annotations

from collections.abc import Callable, MutableMapping
from typing import Any

_inject: Callable[[MutableMapping[str, str]], Any] | None = None
_looked = False


def current_traceparent() -> str | None:
    """The W3C `traceparent` of the current span, or None (no span, or no OpenTelemetry)."""
    global _inject, _looked
    if not _looked:
        _looked = True
        try:
            from opentelemetry.propagate import inject
        except ImportError:
            return None
        _inject = inject
    if _inject is None:
        return None
    carrier: dict[str, str] = {}
    _inject(carrier)
    return carrier.get("traceparent")
