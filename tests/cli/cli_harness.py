"""The real `tako` command in subprocesses: run it, start `tako dev`, poll with deadlines.

Every test here drives the console script exactly as a user would. Setup
and polling use `tako.Client` in-process, which is faster than a
subprocess per poll and is not what is under test.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import tako
from tako._protocol import GetRun
from tako._records import RunView
from tako._replies import RunReply
from tako.cli.options import plain
from tests.procs import http_pids, worker_pids

T = TypeVar("T")
_SCRIPT = Path(sys.executable).with_name("tako")
TAKO = str(_SCRIPT) if _SCRIPT.exists() else (shutil.which("tako") or "tako")
ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")

RUN_KEYS = {
    "run_id",
    "workflow",
    "status",
    "payload",
    "result",
    "error",
    "traceback",
    "attempts",
    "created_at",
    "updated_at",
    "wake_at",
    "waiting_for",
}
RUN_EXTRAS = {"max_attempts", "cancel_requested"}  # documented in docs/protocol.md
STEP_KEYS = {
    "key",
    "name",
    "kind",
    "status",
    "result",
    "error",
    "attempts",
    "started_at",
    "finished_at",
}
STEP_EXTRAS = {"wake_at"}


# echo: completes at once; approve: waits for the signal "go" (read while the supervisor is down)
OFFLINE_FLOWS = """
    from tako import Step, workflow

    @workflow(retries=0)
    async def echo(payload, step: Step):
        return await step.run("echo", lambda: payload)

    @workflow(retries=2)
    async def approve(payload, step: Step):
        await step.run("prepare", lambda: 1)
        return await step.wait_for("go", timeout="2h")
"""


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without TAKO_* settings of whoever runs the tests, and without colour."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TAKO_")}
    env["NO_COLOR"] = "1"
    env.update(extra)
    return env


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


def tako_cmd(
    *args: str | Path,
    cwd: Path | None = None,
    stdin: str | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 60,
) -> Result:
    proc = subprocess.run(
        [TAKO, *map(str, args)],
        cwd=cwd,
        input=stdin if stdin is not None else "",
        capture_output=True,
        text=True,
        env=env or clean_env(),
        timeout=timeout,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


def eventually(check: Callable[[], T | None], *, timeout: float = 15, what: str = "it") -> T:
    """Poll `check` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


def short_data_dir() -> Path:
    """Unix socket paths are at most 107 bytes: keep data dirs short, under /tmp."""
    return Path(tempfile.mkdtemp(prefix="tk", dir="/tmp"))


def make_app(root: Path, files: dict[str, str], *, name: str = "shop") -> Path:
    """An app folder with `workflows/<file>` sources and a tako.toml with fast timings."""
    (root / "workflows").mkdir(parents=True, exist_ok=True)
    (root / "tako.toml").write_text(
        f'name = "{name}"\n[workers]\nidle_timeout = "1s"\nshutdown_grace = "2s"\n'
    )
    for file, source in files.items():
        (root / "workflows" / file).write_text(textwrap.dedent(source))
    return root


class DevServer:
    """`tako dev APP --data-dir D` (or `tako serve`, with `command="serve"`) as a
    subprocess, its output in a log file."""

    def __init__(
        self,
        app_dir: Path,
        data_dir: Path,
        *,
        from_app_dir: bool = False,
        cwd: Path | None = None,
        args: tuple[str, ...] = ("--no-http",),
        env: dict[str, str] | None = None,
        command: str = "dev",
    ) -> None:
        """`from_app_dir`: run `tako dev` in the app folder without naming it (the default);
        `cwd`: the folder to run it in, naming the app. `args`: more options; by default no
        HTTP, so tests need no free port."""
        self.app_dir = app_dir
        self.data_dir = data_dir
        self.log_path = app_dir.parent / f"{command}-{app_dir.name}.log"
        self._log = self.log_path.open("w")
        where = [] if from_app_dir else [str(app_dir)]
        self.proc = subprocess.Popen(
            [TAKO, command, *where, "--data-dir", str(data_dir), *args],
            cwd=app_dir if from_app_dir else cwd,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=clean_env(**(env or {})),
        )
        self.wait_for(lambda: self.socket.exists(), what="the socket")
        self.wait_for_log("Ctrl-C to stop" if command == "dev" else "serving")

    @property
    def socket(self) -> Path:
        return self.data_dir / "tako.sock"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        return self.log_path.read_text()

    def wait_for(self, check: Callable[[], Any], what: str, timeout: float = 20) -> None:
        def alive_check() -> Any:
            if self.proc.poll() is not None:
                raise AssertionError(f"tako exited ({self.proc.returncode}):\n{self.log()}")
            return check()

        eventually(alive_check, timeout=timeout, what=what)

    def wait_for_log(self, text: str, timeout: float = 20) -> None:
        self.wait_for(lambda: text in self.log(), what=repr(text), timeout=timeout)

    def client(self) -> tako.Client:
        return tako.Client(self.socket)

    def tako(self, *args: str | Path, **kwargs: Any) -> Result:
        """`tako ARGS --data-dir D`: the command, pointed at this server."""
        return tako_cmd(*args, "--data-dir", self.data_dir, **kwargs)

    def wait_status(self, run_id: str, *statuses: str) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            reply = self.client().call(GetRun(run_id=run_id), RunReply[RunView])
            run: dict[str, Any] = plain(reply.run)
            return run if run["status"] in statuses else None

        return eventually(check, what=f"run {run_id} to be {'/'.join(statuses)}")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout=20)
        finally:
            self._log.close()
        return code

    def kill(self) -> None:
        """Cleanup for a test that failed half-way: no process may outlive the test."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._log.close()
        for pid in worker_pids(self.app_dir) + http_pids(self.socket):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
