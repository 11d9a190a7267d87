"""`tako dev [APP_DIR]`: the supervisor in the foreground, for development.

It runs `takod.serve` under trio, prints a banner (paths, workflows, files
that failed to load, what to type next) and one line per run event, and
reloads the app when a file under `workflows/` changes. Ctrl-C or SIGTERM
cancels the supervisor, which closes its workers' connections; the command
then exits 0.

Reloading polls file names and mtimes every half second. That is meant for
development only: it costs a directory walk per tick and needs no
dependency or OS-specific watcher. Production deployments run takod without
a watcher and restart it on deploy.
"""

from __future__ import annotations

import functools
import logging
import os
import signal
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import msgspec

from cli.events import EventFormatter, banner, hints
from cli.offline import Store, checked_url
from cli.options import BadInput, Refused, server_options, settings
from cli.render import render_workflows
from cli.text import Paint, use_colour
from tako._records import Registry

if TYPE_CHECKING:
    import trio

    from takod import AppConfig, Supervisor

POLL_INTERVAL = 0.5
SETTLE = 0.1  # after a change, let the editor finish writing before reloading
Snapshot = dict[str, tuple[int, int]]


class DevConsole:
    """Everything `tako dev` writes to stdout, flushed line by line (pipes, files, terminals)."""

    def __init__(self, color: bool) -> None:
        self.color = color
        self.paint = Paint(color)
        self.events = EventFormatter(color=color)

    def echo(self, text: str = "") -> None:
        click.echo(text)
        sys.stdout.flush()

    def event(self, kind: str, fields: dict[str, Any]) -> None:
        """takod's `on_event` hook: called synchronously, so it only formats and prints."""
        try:
            line = self.events.line(kind, fields, datetime.now(UTC))
        except Exception as exc:  # printing must never break the supervisor's operation
            line = f"{kind} {fields} (not formatted: {type(exc).__name__}: {exc})"
        if line is not None:
            self.echo(line)


@click.command("dev", short_help="Run the supervisor in the foreground, reloading on changes.")
@click.argument(
    "app_dir",
    required=False,
    default=".",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
)
@click.option(
    "--http",
    "http_listen",
    metavar="HOST:PORT",
    help="Serve the HTTP API and pages here (default: [http] listen in tako.toml, else "
    "127.0.0.1:8787 or the next free port).",
)
@click.option("--no-http", is_flag=True, help="Serve no HTTP, only the socket.")
@server_options
def dev_cmd(app_dir: Path, http_listen: str | None, no_http: bool) -> None:
    """Run the supervisor for the app in APP_DIR (default: here) in the foreground."""
    import trio  # imported here: only `tako dev` needs trio and takod, the client commands not

    from tako.http._serve import ListenError
    from takod import AlreadyRunning, ConfigError, SocketError, load_config
    from takod.storage import StoreError

    opts = settings()
    app = app_dir.absolute()
    if opts.database_url:
        checked_url(opts.database_url, "--database-url")
    try:  # the database: --database-url, else $TAKO_DATABASE_URL, else [storage] url
        config = load_config(app, opts.database_url)
    except ConfigError as exc:
        raise BadInput(exc.message) from None
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    console = DevConsole(use_colour())
    data_dir = Path(opts.data_dir).absolute() if opts.data_dir else None
    socket = Path(opts.socket).absolute() if opts.socket else None
    try:
        if no_http:
            config.http.enabled = False
        elif http_listen is not None:
            config.http.listen = http_listen
        trio.run(functools.partial(serve, app, data_dir, socket, config, console))
    except BaseException as exc:
        error = _single(exc)
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


async def serve(
    app: Path, data_dir: Path | None, socket: Path | None, config: AppConfig, console: DevConsole
) -> None:
    """Serve until SIGINT or SIGTERM, printing events and reloading on changes."""
    import trio

    import takod

    async with trio.open_nursery() as nursery:
        started: list[Supervisor] = []  # filled once the supervisor is up
        nursery.start_soon(stop_on_signal, nursery.cancel_scope, console, started)
        supervisor = await nursery.start(
            functools.partial(
                takod.serve, app, data_dir, socket=socket, config=config, on_event=console.event
            )
        )
        started.append(supervisor)
        http_url = None
        if config.http.enabled:
            from tako.http._serve import host

            http_url = await host(nursery, supervisor, config.http.listen)
        registry = shown(supervisor.registry)
        store = Store(config.storage.url or supervisor.db_path, config.name)
        console.echo(
            banner(
                app=config.name,
                app_dir=app,
                data_dir=supervisor.data_dir,
                socket=supervisor.socket_path,
                database=str(store),
                http=http_url,
                registry=registry,
                hints=hints(
                    registry,
                    data_dir=supervisor.data_dir,
                    socket=supervisor.socket_path,
                    cwd=Path.cwd(),
                    default_socket=supervisor.data_dir / "tako.sock",
                ),
                color=console.color,
            )
        )
        console.echo()
        nursery.start_soon(watch, app / "workflows", supervisor, console)


def shown(registry: Registry) -> dict[str, Any]:
    """The registry as `tako dev` prints it: the app's own workflows, not tako's."""
    out: dict[str, Any] = msgspec.to_builtins(registry)
    out["workflows"] = msgspec.to_builtins(registry.of_the_app())
    return out


async def stop_on_signal(
    scope: trio.CancelScope, console: DevConsole, started: list[Supervisor]
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


def snapshot(folder: Path) -> Snapshot:
    """Names, mtimes and sizes of `workflows/**/*.py`: enough to notice any save."""
    found: Snapshot = {}
    for path in folder.rglob("*.py"):
        try:
            stat = path.stat()
        except OSError:  # deleted while we looked: the next tick sees it gone
            continue
        found[str(path)] = (stat.st_mtime_ns, stat.st_size)
    return found


def changed_files(before: Snapshot, after: Snapshot, root: Path) -> list[str]:
    names = {p for p in before.keys() | after.keys() if before.get(p) != after.get(p)}
    return sorted(str(Path(p).relative_to(root)) for p in names)


async def watch(folder: Path, supervisor: Supervisor, console: DevConsole) -> None:
    """Poll `workflows/` (dev only, see the module docstring) and reload on any change."""
    import trio

    seen = snapshot(folder)
    while True:
        await trio.sleep(POLL_INTERVAL)
        current = snapshot(folder)
        if current == seen:
            continue
        await trio.sleep(SETTLE)
        current = snapshot(folder)
        changed = changed_files(seen, current, folder.parent)
        seen = current
        stamp = console.paint.dim(datetime.now().strftime("%H:%M:%S"))
        try:
            registry = shown(await supervisor.reload())
        except Exception as exc:  # keep serving the code already loaded
            console.echo(f"{stamp}  {', '.join(changed)} changed: reload failed: {exc}")
            continue
        console.echo(f"{stamp}  {', '.join(changed)} changed: reloaded")
        console.echo(render_workflows(registry, color=console.color))


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


def reap_workers(grace: float, console: DevConsole) -> None:
    """Make sure no worker outlives `tako dev` ("its workers gone").

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
