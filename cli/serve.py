"""`tako serve [APP_DIR]`: the supervisor for production.

The same supervisor as `tako dev`, without what only helps at a desk: no
file watcher (SIGHUP reloads the workflows when a deploy asks for it), no
banner or colours, and log lines as JSON by default (`--log-format text`
for people). It refuses to start while a workflow file fails to load, so a
broken deploy stops at once instead of parking every run of the broken
workflows; `--allow-broken` starts anyway, and those runs wait, saying why,
until a reload brings a good file. SIGTERM drains as `tako dev` does: nothing
new is assigned and steps in flight get `[workers] shutdown_grace` to finish.
"""

from __future__ import annotations

import functools
import logging
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from tako._logs import ENV, JsonFormatter, json_line, now_iso
from tako.cli.dev import DevConsole, shown
from tako.cli.foreground import (
    Paths,
    run_foreground,
    start_config,
    start_supervisor,
    supervisor_options,
)
from tako.cli.offline import Store
from tako.cli.options import Refused

if TYPE_CHECKING:
    from tako.takod import AppConfig, Supervisor


class JsonConsole:
    """One JSON object per line on stdout: run events as `{"time", "event", ...fields}`,
    the command's own messages as `{"time", "level", "logger", "message"}`."""

    def echo(self, text: str = "") -> None:
        if text:
            fields = {"time": now_iso(), "level": "info", "logger": "tako.serve", "message": text}
            self._write(json_line(fields))

    def event(self, kind: str, fields: dict[str, Any]) -> None:
        """takod's `on_event` hook: called synchronously, so it only encodes and prints."""
        self._write(json_line({"time": now_iso(), "event": kind, **fields}))

    def _write(self, line: str) -> None:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


@click.command("serve", short_help="Run the supervisor for production (JSON logs, SIGHUP reloads).")
@click.option(
    "--log-format",
    type=click.Choice(["json", "text"]),
    default="json",
    show_default=True,
    help="Log lines as JSON objects, or as text for people.",
)
@click.option(
    "--allow-broken",
    is_flag=True,
    help="Start even if a workflow file fails to load (its runs wait until it loads).",
)
@supervisor_options
def serve_cmd(
    app_dir: Path, http_listen: str | None, no_http: bool, log_format: str, allow_broken: bool
) -> None:
    """Run the supervisor for the app in APP_DIR (default: here) in the foreground, as a
    service manager (systemd, a container) expects: SIGTERM drains, SIGHUP reloads."""
    config = start_config(app_dir, http_listen, no_http)
    os.environ[ENV] = log_format  # the workers inherit it and log alike
    handler = logging.StreamHandler(sys.stdout)
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
        console: JsonConsole | DevConsole = JsonConsole()
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        console = DevConsole(color=False)
    logging.basicConfig(level=logging.WARNING, handlers=[handler])
    app = app_dir.absolute()
    body = functools.partial(_serve, app, config, console, allow_broken)
    run_foreground(config, console, body)


async def _serve(
    app: Path,
    config: AppConfig,
    console: JsonConsole | DevConsole,
    allow_broken: bool,
    paths: Paths,
) -> None:
    import trio

    from tako.takod.catalog import describe

    registry = await describe(app)
    broken = [f"{e.file}:{e.line}: {e.message}" if e.line else f"{e.file}: {e.message}"
              for e in registry.errors]  # fmt: skip
    if broken and not allow_broken:
        raise Refused(
            "not starting: a workflow file failed to load:\n  "
            + "\n  ".join(broken)
            + "\nFix it, or pass --allow-broken to start anyway (its runs wait until it loads)."
        )
    async with trio.open_nursery() as nursery:
        supervisor, http_url = await start_supervisor(nursery, app, config, console, paths)
        store = Store(config.storage.url or supervisor.db_path, config.name)
        workflows = [w["name"] for w in shown(supervisor.registry)["workflows"]]
        console.event(
            "serving",
            {
                "app": config.name,
                "socket": str(supervisor.socket_path),
                "http": http_url,
                "database": str(store),
                "workflows": workflows,
                "broken": broken,
            },
        )
        nursery.start_soon(_reload_on_hangup, supervisor, console)


async def _reload_on_hangup(supervisor: Supervisor, console: JsonConsole | DevConsole) -> None:
    """SIGHUP: re-read the workflows (after a deploy). A file that fails to load now is
    reported; its runs wait, saying why, until a later reload brings a good file."""
    import trio

    with trio.open_signal_receiver(signal.SIGHUP) as signals:
        async for _ in signals:
            try:
                registry = await supervisor.reload()
            except Exception as exc:  # keep serving the code already loaded
                console.event("reload_failed", {"error": f"{type(exc).__name__}: {exc}"})
                continue
            for e in registry.errors:
                console.event("load_error", {"file": e.file, "line": e.line, "error": e.message})
