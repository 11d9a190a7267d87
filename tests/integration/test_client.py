"""The client API as application code uses it: module functions, errors, timeouts."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trio

import tako
from tako.worker_runtime.registry import ATTR
from tests.conftest import App, running


@pytest.fixture
def runtime() -> str:
    return "asyncio"


def test_workflow_decorator_forms() -> None:
    @tako.workflow
    async def bare_name(payload: object, step: tako.Step) -> None: ...

    @tako.workflow()
    async def empty_call(payload: object, step: tako.Step) -> None: ...

    @tako.workflow("custom-name", retries=0, timeout="1h")
    async def named(payload: object, step: tako.Step) -> None: ...

    assert getattr(bare_name, ATTR).name == "bare-name"
    assert getattr(empty_call, ATTR).name == "empty-call"
    wf = getattr(named, ATTR)
    assert (wf.name, wf.retries, wf.max_attempts, wf.timeout) == ("custom-name", 0, 1, 3600.0)
    with pytest.raises(TypeError, match="async def"):
        tako.workflow(lambda payload, step: None)  # type: ignore[arg-type]


def test_an_unreachable_supervisor_is_named_in_the_error(tmp_path: Path) -> None:
    client = tako.Client(tmp_path / "nowhere.sock")
    with pytest.raises(tako.SupervisorUnavailable) as info:
        client.status()
    assert info.value.socket_path == str(tmp_path / "nowhere.sock")
    assert "tako dev" in str(info.value)


async def test_module_functions_find_the_socket_from_the_environment(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    app.write(
        "echo.py",
        """
        from tako import workflow

        @workflow
        async def echo(payload, step):
            return await step.run("echo", lambda: payload)

        @workflow
        async def parked(payload, step):
            return await step.wait_for("go")
        """,
    )
    monkeypatch.setenv("TAKO_SOCKET", str(app.socket))

    def as_an_app_would() -> None:
        run_id = tako.start("echo", {"n": 1})
        assert tako.result(run_id, timeout=15) == {"n": 1}
        assert tako.result(run_id, timeout=0) == {"n": 1}  # finished: no wait needed at all
        assert tako.get_run(run_id).status == "completed"
        assert [r.run_id for r in tako.list_runs(workflow="echo")] == [run_id]
        waiting = tako.start("parked")
        with pytest.raises(TimeoutError):
            tako.result(waiting, timeout=0.3)  # its own timeout passes first
        with pytest.raises(TimeoutError):
            tako.result(waiting, timeout=0)
        assert tako.cancel(waiting).status in ("cancelled", "running")
        with pytest.raises(tako.RunCancelled):
            tako.result(waiting, timeout=15)
        with pytest.raises(tako.RunNotFound):
            tako.get_run("no-such-run")

    async with running(app):
        await trio.to_thread.run_sync(as_an_app_would)


async def test_async_client_is_an_async_context_manager_under_trio_and_asyncio(app: App) -> None:
    app.write(
        "echo.py", "from tako import workflow\n\n@workflow\nasync def echo(p, s):\n    return p\n"
    )

    async def use(client_of: Callable[[], tako.AsyncClient]) -> Any:
        async with client_of() as client:
            run_id = await client.start("echo", {"n": 2})
            result = await client.result(run_id, timeout=15)
        assert client.sync._idle == []  # its pooled connections are closed on exit
        return result

    async with running(app):
        assert await use(app.client) == {"n": 2}
        in_asyncio = await trio.to_thread.run_sync(asyncio.run, use(app.client))
        assert in_asyncio == {"n": 2}


async def test_wait_until_parked_returns_once_the_run_waits_or_finishes(app: App) -> None:
    app.write(
        "flows.py",
        """
        from tako import workflow

        @workflow
        async def asks(payload, step):
            await step.run("before", lambda: 1)
            return await step.wait_for("answer")

        @workflow
        async def quick(payload, step):
            return await step.run("only", lambda: 2)
        """,
    )
    async with running(app):
        client = app.client()
        asks = await client.start("asks")
        run = await client.wait(asks, parked=True, timeout=15)
        assert (run.status, run.waiting_for) == ("waiting", "answer")
        with pytest.raises(TimeoutError):
            await client.wait(asks, timeout=0.2)  # not finished, still
        quick = await client.start("quick")
        assert (await client.wait(quick, parked=True, timeout=15)).status == "completed"
