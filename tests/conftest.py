"""Shared fixtures: temp apps, a real takod in the test's nursery, and polling with a deadline."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import trio

import tako
from tako import takod
from tests.pg import database_url, drop_app, fresh_app


class App:
    """A temp app folder (workflows/ and tako.toml) with a short data dir for its socket."""

    def __init__(self, root: Path, data_dir: Path, runtime: str, name: str = "testapp") -> None:
        self.dir = root
        self.data_dir = data_dir
        self.runtime = runtime
        self.name = name
        (root / "workflows").mkdir(parents=True, exist_ok=True)
        self.settings: dict[str, dict[str, Any]] = {"workers": {"runtime": runtime}}
        self.configure(workers={"idle_timeout": "1s"})

    @property
    def socket(self) -> Path:
        return self.data_dir / "tako.sock"

    @property
    def log(self) -> Path:
        """A file workflow bodies append side effects to (one line each)."""
        return self.dir / "effects.log"

    def effects(self) -> list[str]:
        return self.log.read_text().splitlines() if self.log.exists() else []

    def write(self, name: str, source: str) -> Path:
        path = self.dir / "workflows" / name
        text = textwrap.dedent(source).replace("EFFECTS", repr(str(self.log)))
        path.write_text(text)
        return path

    def configure(self, **sections: dict[str, Any]) -> None:
        for section, values in sections.items():
            self.settings.setdefault(section, {}).update(values)
        lines = [f'name = "{self.name}"']
        for section, values in self.settings.items():
            lines.append(f"[{section}]")
            for key, value in values.items():
                lines.append(f"{key} = {value!r}".replace("'", '"'))
        (self.dir / "tako.toml").write_text("\n".join(lines) + "\n")

    def client(self) -> tako.AsyncClient:
        return tako.AsyncClient(self.socket)

    def sync_client(self) -> tako.Client:
        return tako.Client(self.socket)


@pytest.fixture(params=["asyncio", "trio"])
def runtime(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def store(request: pytest.FixtureRequest) -> str:
    """Where the app keeps its runs: "sqlite" unless a module asks for both with
    `pytestmark = BOTH_STORES`."""
    return str(getattr(request, "param", "sqlite"))


BOTH_STORES = pytest.mark.parametrize("store", ["sqlite", "postgres"], indirect=True)


@pytest.fixture
def app(tmp_path: Path, runtime: str, store: str) -> Iterator[App]:
    data_dir = Path(tempfile.mkdtemp(prefix="tk", dir="/tmp"))  # unix socket paths are short
    url = database_url() if store == "postgres" else None
    name = fresh_app() if url else "testapp"
    try:
        app = App(tmp_path / "app", data_dir, runtime, name)
        if url:
            app.configure(storage={"url": url})
        yield app
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
        if url:
            drop_app(url, name)


@asynccontextmanager
async def running(app: App, **kwargs: Any) -> AsyncIterator[takod.Supervisor]:
    """A real takod for `app`, stopped (cleanly) when the block ends."""
    async with trio.open_nursery() as nursery:
        supervisor = await nursery.start(
            lambda task_status: takod.serve(
                app.dir,
                app.data_dir,
                task_status=task_status,
                on_event=lambda k, f: print(time.time(), k, f),
                **kwargs,
            )
        )
        try:
            yield supervisor
        finally:
            nursery.cancel_scope.cancel()


async def eventually(
    check: Callable[[], Awaitable[Any]] | Callable[[], Any],
    *,
    timeout: float = 15.0,
    what: str = "condition",
) -> Any:
    """Poll `check` until it returns something truthy; fail after `timeout` seconds."""
    with trio.move_on_after(timeout):
        while True:
            value = check()
            if isinstance(value, Awaitable):
                value = await value
            if value:
                return value
            await trio.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


async def clock_past(moment: datetime) -> None:
    """Wait until the wall clock (takod's too, in whole ms) reads later than `moment`:
    e.g. before pruning with `older_than=0`, which keeps runs finished this very ms."""
    ms = int(moment.timestamp() * 1000)
    await eventually(lambda: int(time.time() * 1000) > ms, what=f"the clock to pass {moment}")


async def status_of(client: tako.AsyncClient, run_id: str, *statuses: str) -> tako.Run | None:
    run = await client.get_run(run_id)
    return run if run.status in statuses else None


class TakodProcess:
    """takod as a real process (`python -m tako.takod`), to be killed or signalled by a test."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.proc: subprocess.Popen[bytes] | None = None

    async def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tako.takod",
                str(self.app.dir),
                "--data-dir",
                str(self.app.data_dir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=open(self.app.dir / "takod.log", "ab"),  # noqa: SIM115 - the child owns it
        )
        client = self.app.client()

        async def up() -> bool:
            try:
                await client.status()
                return True
            except tako.SupervisorUnavailable:
                return False

        await eventually(up, what="takod to accept connections")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    async def wait(self, timeout: float = 30) -> int:
        """Its exit code, once it has exited."""
        proc = self.proc
        assert proc is not None
        await eventually(lambda: proc.poll() is not None, timeout=timeout, what="takod to exit")
        return int(proc.returncode)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
