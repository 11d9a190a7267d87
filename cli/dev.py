"""`tako dev [APP_DIR]`: the supervisor in the foreground, for development.

It runs `takod.serve` under trio, prints a banner (paths, workflows, files
that failed to load, what to type next) and one line per run event, and
reloads the app when a file under `workflows/` changes. Ctrl-C or SIGTERM
cancels the supervisor, which closes its workers' connections; the command
then exits 0.

Reloading polls file names and mtimes every half second. That is meant for
development only: it costs a directory walk per tick and needs no
dependency or OS-specific watcher. In production, `tako serve` (cli/serve.py)
runs the same supervisor without a watcher; SIGHUP reloads it.
"""

from __future__ import annotations

import functools
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import msgspec

from tako._records import Registry
from tako.cli.events import EventFormatter, banner, hints
from tako.cli.foreground import (
    Paths,
    run_foreground,
    start_config,
    start_supervisor,
    supervisor_options,
)
from tako.cli.offline import Store
from tako.cli.render import render_workflows
from tako.cli.text import Paint, use_colour

if TYPE_CHECKING:
    from tako.takod import AppConfig, Supervisor

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
@supervisor_options
def dev_cmd(app_dir: Path, http_listen: str | None, no_http: bool) -> None:
    """Run the supervisor for the app in APP_DIR (default: here) in the foreground."""
    config = start_config(app_dir, http_listen, no_http)
    console = DevConsole(use_colour())
    app = app_dir.absolute()
    run_foreground(config, console, functools.partial(serve, app, config, console))


async def serve(app: Path, config: AppConfig, console: DevConsole, paths: Paths) -> None:
    """Serve until SIGINT or SIGTERM, printing events and reloading on changes."""
    import trio

    async with trio.open_nursery() as nursery:
        supervisor, http_url = await start_supervisor(nursery, app, config, console, paths)
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
