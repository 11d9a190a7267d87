"""OpenTelemetry: one trace from the caller's span through `start`, each run attempt
and each step that ran, across a park and a resume.

The caller's spans are read from the SDK's in-memory exporter; the worker's, written
by the SDK's console exporter (a worker is another process) to a file, one JSON
object per span."""

from __future__ import annotations

import json
from typing import Any

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.conftest import App, eventually, running

TRACED = """
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor
    from tako import workflow

    provider = TracerProvider()
    exporter = ConsoleSpanExporter(
        out=open(EFFECTS, "a"), formatter=lambda span: span.to_json(indent=None) + "\\n"
    )
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)

    def fetch():
        with trace.get_tracer("app").start_as_current_span("GET /orders/7"):
            return 7

    @workflow("traced")
    async def traced(payload, step):
        order = await step.run("fetch", fetch)
        answer = await step.wait_for("answer")
        return await step.run("reply", lambda: f"{order}:{answer}")
"""


def worker_spans(app: App) -> list[dict[str, Any]]:
    return [json.loads(line) for line in app.effects()]


async def test_a_callers_span_and_the_runs_attempts_and_steps_are_one_trace(app: App) -> None:
    app.write("traced.py", TRACED)
    caller = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(caller))
    async with running(app):
        client = app.client()
        with provider.get_tracer("test").start_as_current_span("POST /checkout") as request:
            run_id = await client.start("traced")
        await client.wait(run_id, parked=True, timeout=30)
        await client.signal("answer", "yes", run_id=run_id)
        assert await client.result(run_id, timeout=30) == "7:yes"
        names = lambda: {s["name"] for s in worker_spans(app)}  # noqa: E731
        await eventually(lambda: {"run traced", "step reply"} <= names(), what="the spans")

    trace_id = f"0x{request.get_span_context().trace_id:032x}"
    request_id = f"0x{request.get_span_context().span_id:016x}"
    spans = worker_spans(app)
    assert {s["context"]["trace_id"] for s in spans} == {trace_id}
    by_name: dict[str, list[dict[str, Any]]] = {}
    for span in spans:
        by_name.setdefault(span["name"], []).append(span)
    # two attempts: to the wait, then after the signal; each a child of the request
    attempts = by_name["run traced"]
    assert [a["attributes"]["tako.outcome"] for a in attempts] == ["parked", "completed"]
    assert all(a["parent_id"] == request_id for a in attempts)
    assert {a["attributes"]["tako.run_id"] for a in attempts} == {run_id}
    first, second = (a["context"]["span_id"] for a in attempts)
    # each step that ran is a child of its attempt; "fetch" is replayed, not run, after
    assert [s["parent_id"] for s in by_name["step fetch"]] == [first]
    assert [s["parent_id"] for s in by_name["step answer"]] == [first]
    assert [s["parent_id"] for s in by_name["step reply"]] == [second]
    # the body's own span nests under its step
    (inner,) = by_name["GET /orders/7"]
    assert inner["parent_id"] == by_name["step fetch"][0]["context"]["span_id"]
    assert [s.name for s in caller.get_finished_spans()] == ["POST /checkout"]


async def test_no_span_no_trace_context(app: App) -> None:
    app.write("traced.py", TRACED)
    async with running(app):
        client = app.client()
        run_id = await client.start("traced")
        await client.wait(run_id, parked=True, timeout=30)
        await eventually(lambda: worker_spans(app), what="the first spans")
    attempt = next(s for s in worker_spans(app) if s["name"] == "run traced")
    assert attempt["parent_id"] is None  # a root: no caller's trace to join
