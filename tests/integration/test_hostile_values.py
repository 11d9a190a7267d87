"""Hostile values in a run: it fails alone, with a message naming its step, never the worker.

Each case runs next to a neighbour whose step is in flight in the same worker
process. The hostile run must fail (or its step must) with a clear error,
while the worker stays up and the neighbour completes without being charged
an attempt. takod also refuses, at the edge, JSON its readers could not
decode back (`1e400`), and still lists rows of such JSON already stored.
"""

from __future__ import annotations

import re
import sqlite3
from typing import Any

import msgspec
import pytest
import trio

import tako
from tests.conftest import App, eventually, running, status_of
from tests.procs import worker_pids

FLOWS = """
    import os, pathlib, time
    from tako import workflow

    GATE = pathlib.Path(EFFECTS + ".gate")

    def held():
        with open(EFFECTS, "a") as f:
            f.write("holding\\n")
        deadline = time.monotonic() + 60
        while not GATE.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        return "released"

    @workflow(retries=0)
    async def neighbour(payload, step):
        return await step.run("hold", held)

    def bad_name():
        raise ValueError("no such file: " + os.fsdecode(b"/tmp/\\xff.txt"))

    @workflow(retries=0)
    async def error_message(payload, step):
        await step.run("open-file", bad_name)

    @workflow(retries=0)
    async def missing_file(payload, step):
        await step.run("open-file", lambda: open(os.fsdecode(b"/nonexistent/\\xff.txt")))

    @workflow(retries=0)
    async def step_result(payload, step):
        await step.run("file-name", lambda: os.fsdecode(b"\\xff.txt"), retries=3)

    @workflow(retries=0)
    async def workflow_result(payload, step):
        return {"name": os.fsdecode(b"\\xff.txt")}

    @workflow(retries=0)
    async def nan_result(payload, step):
        await step.run("ratio", lambda: {"ratio": float("nan")}, retries=3)

    @workflow(retries=0)
    async def bail_reason(payload, step):
        step.bail(os.fsdecode(b"gone \\xff"))

    @workflow(retries=0)
    async def untyped(payload, step):
        return payload

    @workflow(retries=0)
    async def not_awaited(payload, step):
        step.run("a", lambda: 1)
        return "done"

    @workflow(retries=0)
    async def sleep_not_awaited(payload, step):
        step.sleep("nap", "1s")

    @workflow(retries=0)
    async def wait_not_awaited(payload, step):
        step.wait_for("go")

    @workflow(retries=0)
    async def approval_not_awaited(payload, step):
        step.approval("ok", summary="fine?")

    @workflow(retries=0)
    async def asks(payload, step):
        return (await step.approval("ok", summary="fine?")).value

    @workflow(retries=0)
    async def all_awaited(payload, step):
        first = step.run("a", lambda: 1)
        second = step.run("b", lambda: 2)
        return await second + await first
"""


async def neighbour_in_flight(app: App, client: tako.AsyncClient) -> str:
    run_id = await client.start("neighbour")
    await eventually(lambda: "holding" in app.effects(), what="the neighbour's step to run")
    return run_id


async def neighbour_unharmed(app: App, client: tako.AsyncClient, run_id: str) -> None:
    (app.dir / "effects.log.gate").touch()
    assert await client.result(run_id, timeout=30) == "released"
    assert (await client.get_run(run_id)).attempts == 1


def step_of(run: tako.Run, key: str) -> Any:
    return next(s for s in run.steps if s.key == key)


CASES = [
    # workflow, the run's error, the failed step (None: no step fails), its error
    ("error-message", r"step 'open-file' failed.*ValueError: no such file: /tmp/\\udcff.txt",
     "open-file", r"^ValueError: no such file: /tmp/\\udcff.txt$"),
    ("missing-file", r"step 'open-file' failed.*FileNotFoundError.*\\udcff",
     "open-file", r"^FileNotFoundError: .*/nonexistent/\\udcff.txt"),
    ("step-result", r"^step 'file-name' returned a str, which JSON cannot encode",
     "file-name", r"^step 'file-name' returned a str, which JSON cannot encode"),
    ("workflow-result", r"^workflow 'workflow-result' returned a dict, which JSON",
     None, ""),
    ("nan-result", r"^step 'ratio' returned a dict holding NaN or infinity",
     "ratio", r"^step 'ratio' returned a dict holding NaN"),
    ("not-awaited", r"^step 'a' was never awaited: write `await step.run\(...\)`", None, ""),
    ("sleep-not-awaited", r"^step 'nap' was never awaited: write `await step.sleep", None, ""),
    ("wait-not-awaited", r"^step 'go' was never awaited: write `await step.wait_for", None, ""),
    ("approval-not-awaited", r"^step 'ok' was never awaited: write `await step.approval",
     None, ""),
]  # fmt: skip


@pytest.mark.parametrize(
    ("workflow", "error", "step", "step_error"), CASES, ids=[c[0] for c in CASES]
)
async def test_a_hostile_run_fails_alone_naming_its_step(
    app: App, workflow: str, error: str, step: str | None, step_error: str
) -> None:
    app.write("flows.py", FLOWS)
    async with running(app):
        client = app.client()
        neighbour = await neighbour_in_flight(app, client)
        workers = worker_pids(app.dir)
        run_id = await client.start(workflow)
        with pytest.raises(tako.RunFailed):
            await client.result(run_id, timeout=30)
        run = await client.get_run(run_id)
        assert run.attempts == 1, run
        assert run.error is not None
        assert re.search(error, run.error), run.error
        if step is not None:
            failed = step_of(run, step)
            assert (failed.status, failed.attempts) == ("failed", 1), failed
            assert re.search(step_error, failed.error or ""), failed.error
        assert worker_pids(app.dir) == workers, "the worker died"
        await neighbour_unharmed(app, client, neighbour)


async def test_a_bail_reason_of_any_text_cancels_the_run_alone(app: App) -> None:
    app.write("flows.py", FLOWS)
    async with running(app):
        client = app.client()
        neighbour = await neighbour_in_flight(app, client)
        run_id = await client.start("bail-reason")
        run = await eventually(lambda: status_of(client, run_id, "cancelled"))
        assert run.error == "gone \\udcff"
        await neighbour_unharmed(app, client, neighbour)


async def test_steps_called_first_and_awaited_later_are_fine(app: App) -> None:
    app.write("flows.py", FLOWS)
    async with running(app):
        assert await app.client().result(await app.client().start("all-awaited"), timeout=30) == 3


async def test_a_failed_runs_traceback_starts_at_the_users_code(app: App) -> None:
    app.write("flows.py", FLOWS)
    async with running(app):
        client = app.client()
        run_id = await client.start("error-message")
        with pytest.raises(tako.RunFailed):
            await client.result(run_id, timeout=30)
        tb = (await client.get_run(run_id)).traceback or ""
    frames = [line for line in tb.splitlines() if line.startswith('  File "')]
    flows = str(app.dir / "workflows" / "flows.py")
    # the step's own exception, then the handler's: each from the user's first frame
    assert len(frames) >= 2 and all(f'File "{flows}"' in f for f in frames[:2]), tb
    assert "in bad_name" in frames[0] and "in error_message" in frames[1], tb
    assert "worker_runtime" not in tb.split("The above exception")[0], tb
    assert tb.rstrip().splitlines()[-1].startswith("tako._errors.StepFailed: step 'open-file'")


async def test_an_undecodable_payload_fails_its_run_not_the_worker(app: App) -> None:
    """A payload takod would now refuse, stored before it did: the run fails, alone."""
    app.write("flows.py", FLOWS)
    async with running(app):
        client = app.client()
        neighbour = await neighbour_in_flight(app, client)
        workers = worker_pids(app.dir)
        run_id = await client.start("untyped", [1], delay=1.0)
        with sqlite3.connect(app.data_dir / "apps" / "testapp" / "runs.db", timeout=10) as db:
            db.execute("UPDATE runs SET payload = ? WHERE id = ?", (b"[1e400]", run_id))
        with pytest.raises(tako.RunFailed, match="payload cannot be decoded: Number out of range"):
            await client.result(run_id, timeout=30)
        assert (await client.get_run(run_id)).attempts == 1
        assert worker_pids(app.dir) == workers, "the worker died"
        await neighbour_unharmed(app, client, neighbour)


# -- takod refuses what its readers cannot decode -----------------------------------------


class Reply(msgspec.Struct):
    ok: bool
    error: dict[str, str] | None = None


async def ask(app: App, line: bytes) -> Reply:
    stream = await trio.open_unix_socket(str(app.socket))
    async with stream:
        await stream.send_all(line + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            data += await stream.receive_some()
    return msgspec.json.decode(data, type=Reply)


@pytest.mark.parametrize(
    "line",
    [
        b'{"id":1,"op":"start","workflow":"untyped","payload":{"x":[1e400]}}',
        b'{"id":1,"op":"start","workflow":"untyped","payload":-1E+999}',
        b'{"id":1,"op":"signal","event":"go","payload":1e400}',
    ],
)
async def test_a_number_out_of_range_is_refused_as_invalid(app: App, line: bytes) -> None:
    app.write("flows.py", FLOWS)
    async with running(app):
        reply = await ask(app, line)
        assert not reply.ok and reply.error is not None
        assert reply.error["code"] == "invalid", reply
        assert "payload cannot be stored: Number out of range" in reply.error["message"]
        assert await app.client().list_runs() == []


async def test_an_edited_value_out_of_range_is_refused_as_invalid(app: App) -> None:
    app.write("flows.py", FLOWS)
    async with running(app):
        client = app.client()
        run_id = await client.start("asks")
        await eventually(lambda: status_of(client, run_id, "waiting"))
        key = f"{run_id}:ok".encode()
        line = b'{"id":1,"op":"approve","key":"%s","by":"al","value":[1e400]}' % key
        reply = await ask(app, line)
        assert not reply.ok and reply.error is not None and reply.error["code"] == "invalid"
        assert "edited value cannot be stored: Number out of range" in reply.error["message"]
        assert (await client.get_run(run_id)).status == "waiting"


async def test_rows_readers_cannot_decode_are_listed_marked(app: App) -> None:
    """Rows written by hand (or before takod refused such values) break no listing."""
    app.write("flows.py", FLOWS)
    async with running(app):
        client = app.client()
        good = await client.start("untyped", {"n": 1})
        await client.result(good, timeout=30)
        bad = await client.start("untyped", {"n": 2}, delay=3600)
        with sqlite3.connect(app.data_dir / "apps" / "testapp" / "runs.db", timeout=10) as db:
            db.execute(
                "UPDATE runs SET payload = ?, result = ? WHERE id = ?",
                (b'{"n": 1e400}', b"NaN", bad),
            )
        runs = {r.run_id: r for r in await client.list_runs()}
        assert runs[good].payload == {"n": 1}
        assert runs[bad].payload == {"unreadable_json": '{"n": 1e400}'}
        assert runs[bad].result == {"unreadable_json": "NaN"}
        assert (await client.get_run(bad)).payload == {"unreadable_json": '{"n": 1e400}'}


async def test_the_client_refuses_nan_and_infinity_instead_of_sending_null(app: App) -> None:
    app.write("flows.py", FLOWS)
    async with running(app):
        client = app.client()
        for value in (float("nan"), {"x": [float("-inf")]}):
            with pytest.raises(tako.InvalidRequest, match="NaN or infinity"):
                await client.start("untyped", value)
            with pytest.raises(tako.InvalidRequest, match="NaN or infinity"):
                await client.signal("go", value)
        assert await client.list_runs() == []
