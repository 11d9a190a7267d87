"""What `tako dev` and `tako serve` share: settings, the trio run, signals, and exit.

Both run the supervisor in the foreground of the command's own process and
differ in what they print and whether they watch files; this module holds
the rest: reading the settings and `tako.toml`, turning start-up errors into
exit codes, stopping gracefully on the first SIGINT or SIGTERM (at once on
the second), and making sure no worker outlives the command.
"""

from __future__ import annotations

import functools
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import click

from tako.cli.offline import checked_url
from tako.cli.options import BadInput, Refused, server_options, settings

if TYPE_CHECKING:
    import trio

    from tako.takod import AppConfig, Supervisor

F = TypeVar("F", bound=Callable[..., Any])
Paths = tuple[Path | None, Path | None]  # the data dir and the socket, when given


class Console(Protocol):
    """Where a foreground supervisor writes its lines (text or JSON)."""

    def echo(self, text: str = "") -> None: ...
    def event(self, kind: str, fields: dict[str, Any]) -> None: ...


def supervisor_options(fn: F) -> F:
    """APP_DIR, `--http`, `--no-http` and the global options, as both commands take them."""
    fn = server_options(fn)
    fn = click.option("--no-http", is_flag=True, help="Serve no HTTP, only the socket.")(fn)
    fn = click.option(
        "--http",
        "http_listen",
        metavar="HOST:PORT",
        help="Serve the HTTP API and pages here (default: [http] listen in tako.toml, else "
        "127.0.0.1:8787 or the next free port).",
    )(fn)
    return click.argument(
        "app_dir",
        required=False,
        default=".",
        type=click.Path(exists=True, file_okay=False, path_type=Path),
    )(fn)


def start_config(app_dir: Path, http_listen: str | None, no_http: bool) -> AppConfig:
    """The app's configuration with the command line's overrides applied."""
    from tako.takod import ConfigError, load_config

    opts = settings()
    if opts.database_url:
        checked_url(opts.database_url, "--database-url")
    try:  # the database: --database-url, else $TAKO_DATABASE_URL, else [storage] url
        config = load_config(app_dir.absolute(), opts.database_url)
    except ConfigError as exc:
        raise BadInput(exc.message) from None
    if no_http:
        config.http.enabled = False
    elif http_listen is not None:
        config.http.listen = http_listen
    return config


async def start_supervisor(
    nursery: trio.Nursery, app: Path, config: AppConfig, console: Console, paths: Paths
) -> tuple[Supervisor, str | None]:
    """Start takod (and its HTTP server, unless disabled) in `nursery`, stopping on the
    first SIGINT or SIGTERM; returns the supervisor and the HTTP address."""
    from tako import takod

    data_dir, socket = paths
    started: list[Supervisor] = []  # filled once the supervisor is up
    nursery.start_soon(stop_on_signal, nursery.cancel_scope, console, started)
    supervisor: Supervisor = await nursery.start(
        functools.partial(
            takod.serve, app, data_dir, socket=socket, config=config, on_event=console.event
        )
    )
    started.append(supervisor)
    http_url = None
    if config.http.enabled:
        from tako.http._serve import host

        http_url = await host(nursery, supervisor, config.http.listen)
    return supervisor, http_url


def run_foreground(
    config: AppConfig, console: Console, body: Callable[[Paths], Awaitable[None]]
) -> None:
    """Run `body((data_dir, socket))` under trio until it returns or a signal stops it;
    map start-up errors to exit codes; reap the workers."""
    import trio  # imported here: only the supervisor commands need trio and takod

    from tako.http._serve import ListenError
    from tako.takod import AlreadyRunning, SocketError
    from tako.takod.storage import StoreError

    opts = settings()
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    data_dir = Path(opts.data_dir).absolute() if opts.data_dir else None
    socket = Path(opts.socket).absolute() if opts.socket else None
    try:
        trio.run(functools.partial(body, (data_dir, socket)))
    except BaseException as exc:
        error = _single(exc)
        if isinstance(error, click.ClickException):  # the command's own refusal
            raise error from None
        if isinstance(error, KeyboardInterrupt):  # a second Ctrl-C while stopping
            console.echo("interrupted")
            reap_workers(0, console)
            raise SystemExit(130) from None
        if isinstance(error, AlreadyRunning | StoreError):
            raise Refused(error.message) from None
        if isinstance(error, SocketError | ListenError):
            raise BadInput(error.message) from None
        raise
    reap_workers(config.workers.shutdown_grace, console)
    console.echo("stopped")


async def stop_on_signal(
    scope: trio.CancelScope, console: Console, started: list[Supervisor]
) -> None:
    """Stop gracefully at the first SIGINT or SIGTERM, at once at the second.

    Gracefully: nothing new is assigned and steps in flight get
    `[workers] shutdown_grace` to finish and checkpoint."""
    import trio

    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            console.echo(f"{signal.Signals(signum).name}: stopping the supervisor and its workers")
            if started:
                async with trio.open_nursery() as draining:

                    async def second_signal() -> None:
                        async for _ in signals:
                            console.echo("stopping now")
                            draining.cancel_scope.cancel()

                    draining.start_soon(second_signal)
                    grace = started[0].config.workers.shutdown_grace
                    left = await started[0].drain(grace)
                    if left:
                        console.echo(
                            f"{left} run(s) still in a step after {grace:g} s: "
                            "they resume at the next start"
                        )
                    draining.cancel_scope.cancel()
            scope.cancel()
            return


def _single(exc: BaseException) -> BaseException:
    """The one error inside nested exception groups (trio nurseries wrap what they raise)."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def child_pids() -> list[int]:
    """Our live child processes, from /proc (empty where there is no /proc)."""
    me, found = os.getpid(), []
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            stat = Path("/proc", entry, "stat").read_text()
        except OSError:
            continue
        state, ppid = stat.rsplit(")", 1)[1].split()[:2]
        if int(ppid) != me:
            continue
        if state == "Z":  # exited already: collect it now
            _reap(int(entry))
        else:
            found.append(int(entry))
    return found


def _reap(pid: int) -> bool:
    """Collect the exit status of a child that has exited; False while it still runs."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True
    return done != 0


def reap_workers(grace: float, console: Console) -> None:
    """Make sure no worker outlives the command (`tako dev` or `tako serve`).

    Stopping takod closes every worker's connection, and a worker exits once
    its in-flight step returns. A step may take long, so we wait at most
    `[workers] shutdown_grace`, then kill what is left; the runs they held
    are resumed at the next start (at-least-once for the step in flight)."""
    pids = child_pids()
    if not pids:
        return
    console.echo(f"waiting up to {grace:g} s for {len(pids)} worker(s) to exit")
    deadline = time.monotonic() + grace
    while pids and time.monotonic() < deadline:
        time.sleep(0.05)
        pids = [pid for pid in pids if not _reap(pid)]
    for pid in pids:
        console.echo(f"killing worker pid {pid}: still busy after {grace:g} s")
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
