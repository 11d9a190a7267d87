"""takod: the supervisor. Owns runs.db, listens on the unix socket, spawns workers.

`serve` is the one entry point, used by `tako dev` and by the tests alike.
"""

from __future__ import annotations

import os
from pathlib import Path

import trio

from tako._errors import TakoError
from tako._paths import SOCKET_NAME, resolve_data_dir
from tako.takod.config import AppConfig, ConfigError, load_config
from tako.takod.scheduler import Clock
from tako.takod.server import AlreadyRunning, SocketError
from tako.takod.storage import StoreError
from tako.takod.supervisor import EventHook, Supervisor

__all__ = [
    "AlreadyRunning",
    "AppConfig",
    "ConfigError",
    "SocketError",
    "StoreError",
    "Supervisor",
    "load_config",
    "serve",
    "startup_error",
]


def startup_error(exc: BaseException) -> TakoError | None:
    """The error that stopped a supervisor from starting, dug out of exception groups
    (a data dir already locked, a bad tako.toml, an unusable database or socket)."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    if isinstance(exc, AlreadyRunning | ConfigError | StoreError | SocketError):
        return exc
    return None


async def serve(
    app_dir: str | os.PathLike[str],
    data_dir: str | os.PathLike[str] | None = None,
    *,
    socket: str | os.PathLike[str] | None = None,
    config: AppConfig | None = None,
    clock: Clock | None = None,
    on_event: EventHook | None = None,
    task_status: trio.TaskStatus[Supervisor] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the supervisor for the app in `app_dir` until cancelled.

    With `nursery.start(serve, ...)` the caller gets the `Supervisor` once the
    socket accepts connections."""
    app = Path(app_dir).absolute()
    data = resolve_data_dir(app, data_dir)
    supervisor = Supervisor(
        app,
        data_dir=data,
        socket_path=Path(socket).absolute() if socket else data / SOCKET_NAME,
        config=config or load_config(app),
        clock=clock,
        on_event=on_event,
    )
    await supervisor.serve(task_status=task_status)
