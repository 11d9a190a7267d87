"""OpenTelemetry spans for runs and steps, when the `otel` extra is installed.

Each run attempt a worker executes is a span, `run <workflow>`, whose parent
is the trace context its `start` carried (the caller's span: a web request,
a parent run's step), so a request and the run it started are one trace
however long the run sleeps. Each step the attempt runs, not replays, is a
child span, `step <key>`, current while the step's body runs: spans the body
makes (an instrumented HTTP client) nest under it.

The tracer provider is the app's to configure (a file in `workflows/` that
every worker imports). Without OpenTelemetry installed, `start_run` returns
`NO_TRACE`, whose methods do nothing.
"""

from __future__ import annotations

import logging
from contextlib import AbstractContextManager, nullcontext
from types import TracebackType
from typing import Any

from tako._protocol import Assign

log = logging.getLogger("tako.worker")

try:
    from opentelemetry import context as otel_context
    from opentelemetry import trace as otel_trace
    from opentelemetry.trace import Span, Status, StatusCode
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
except ImportError:  # the `otel` extra is not installed: no spans, at no cost
    otel_trace = None  # type: ignore[assignment]


_NO_SPAN = nullcontext()  # reusable: entering it does nothing


class NoTrace:
    """A run without spans."""

    def step(self, key: str, kind: str) -> AbstractContextManager[Any]:
        return _NO_SPAN

    def finished(self, outcome: str, error: str | None = None) -> None:
        pass

    def end(self) -> None:
        pass


NO_TRACE = NoTrace()


class RunTrace(NoTrace):
    """The span of one run attempt, and the parent of its steps' spans."""

    def __init__(self, assign: Assign) -> None:
        carrier = {"traceparent": assign.traceparent} if assign.traceparent else {}
        parent = TraceContextTextMapPropagator().extract(carrier)
        self.span = otel_trace.get_tracer("tako").start_span(
            f"run {assign.workflow}",
            context=parent,
            attributes={
                "tako.run_id": assign.run_id,
                "tako.workflow": assign.workflow,
                "tako.attempt": assign.attempt,
                "tako.replayed_steps": len(assign.memo),
            },
        )
        self.context = otel_trace.set_span_in_context(self.span, parent)

    def step(self, key: str, kind: str) -> AbstractContextManager[Any]:
        return StepSpan(self, key, kind)

    def finished(self, outcome: str, error: str | None = None) -> None:
        """How the attempt ended, as the worker reports it to takod."""
        self.span.set_attribute("tako.outcome", outcome)
        if outcome in ("failed", "fatal"):
            self.span.set_status(Status(StatusCode.ERROR, error))

    def end(self) -> None:
        self.span.end()


class StepSpan:
    """A step's span, current while its body runs; an exception marks it failed."""

    def __init__(self, run: RunTrace, key: str, kind: str) -> None:
        self.span: Span = otel_trace.get_tracer("tako").start_span(
            f"step {key}",
            context=run.context,
            attributes={"tako.step": key, "tako.step.kind": kind},
        )
        self._token: object = None

    def __enter__(self) -> StepSpan:
        self._token = otel_context.attach(otel_trace.set_span_in_context(self.span))
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        otel_context.detach(self._token)  # type: ignore[arg-type]
        if isinstance(exc, Exception):
            self.span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
        self.span.end()


def start_run(assign: Assign) -> NoTrace:
    """The trace of one run attempt: `NO_TRACE` without OpenTelemetry."""
    if otel_trace is None:
        return NO_TRACE
    provider = otel_trace.get_tracer_provider()
    if isinstance(provider, otel_trace.ProxyTracerProvider | otel_trace.NoOpTracerProvider):
        return NO_TRACE  # installed but not configured: spans nobody records cost time
    try:
        return RunTrace(assign)
    except Exception:  # a broken tracer setup must not fail the run
        log.exception("run %s: could not start its span", assign.run_id)
        return NO_TRACE


def flush() -> None:
    """Send the spans still buffered (a worker exits without running atexit hooks)."""
    if otel_trace is None:
        return
    force_flush = getattr(otel_trace.get_tracer_provider(), "force_flush", None)
    if force_flush is not None:
        try:
            force_flush(5000)
        except Exception:
            log.exception("could not flush the last spans")
