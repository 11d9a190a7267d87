"""Answers for read commands while the supervisor is down.

Runs are read from `<data_dir>/apps/<app>/runs.db`, opened read-only, with
the same helpers takod uses to answer, so the JSON is identical whether
the supervisor is up or not. The app is `--app NAME`, else the app of the
current folder (`name` in its tako.toml, else the folder's name), else the
only app in the data dir. Workflows are learned by running the worker's
`--describe` in a subprocess: user code is never imported into the CLI.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec

from cli.options import BadInput, Unreachable
from tako._paths import find_app_dir
from tako._records import Registry, RunStatus, RunView

if TYPE_CHECKING:
    from takod.storage import Reads

T = TypeVar("T")
DESCRIBE_TIMEOUT = 60.0


def app_name(folder: Path) -> str:
    """The app name of a folder: `name` in its tako.toml, else the folder's name."""
    try:
        config = tomllib.loads((folder / "tako.toml").read_text())
    except (OSError, ValueError):
        return folder.name
    name = config.get("name")
    return name if isinstance(name, str) and name else folder.name


def find_database(data_dir: Path, app: str | None, down: Unreachable) -> Path:
    """The runs.db to read: `--app`, else the current folder's app, else the only app.

    `down` is the error to raise when there is nothing to read: the supervisor
    is unreachable and no database can stand in for it."""
    apps = data_dir / "apps"
    if app is not None:
        path = apps / app / "runs.db"
        if not path.exists():
            raise Unreachable(
                f"{down.message}\n(and there is no database for app {app!r} at {path})"
            )
        return path
    here = apps / app_name(find_app_dir()) / "runs.db"
    if here.exists():
        return here
    found = sorted(p.parent.name for p in apps.glob("*/runs.db")) if apps.is_dir() else []
    if len(found) == 1:
        return apps / found[0] / "runs.db"
    if not found:
        raise Unreachable(f"{down.message}\n(and there is no runs.db under {apps} to read)")
    names = ", ".join(found)
    raise BadInput(f"{data_dir} holds several apps ({names}): pick one with --app NAME")


def read(database: Path, fn: Callable[[Reads], T]) -> T:
    """Call `fn` with the store's read views on `database`, read-only."""
    from takod.storage import open_reads  # only needed while the supervisor is down

    with open_reads(database) as reads:
        return fn(reads)


def interrupted(run: RunView) -> RunView:
    """With no supervisor, nothing runs: a run the store still calls `running` was
    interrupted, and a supervisor puts it back in the queue first thing when it starts.
    So it reads as what it is, `pending`."""
    if run.status == RunStatus.RUNNING:
        return msgspec.structs.replace(run, status=RunStatus.PENDING)
    return run


def offline_status(status: str | None) -> list[str | None]:
    """The stored statuses behind a `--status` filter, read while the supervisor is down."""
    match status:
        case "running":
            return []
        case "pending":
            return ["pending", "running"]
        case _:
            return [status]


def offline_counts(counts: dict[str, int]) -> dict[str, int]:
    """Runs per status as they stand while the supervisor is down (see `interrupted`)."""
    counts = dict(counts)
    if "running" in counts:
        counts["pending"] = counts.get("pending", 0) + counts.pop("running")
    return counts


def describe(app_dir: Path) -> dict[str, Any]:
    """The app's workflows and load errors, from `python -m worker_runtime APP --describe`."""
    # -P: the current folder must not shadow installed packages (a `tako/` clone here)
    argv = [sys.executable, "-P", "-m", "worker_runtime", str(app_dir), "--describe"]
    try:
        proc = subprocess.run(argv, capture_output=True, timeout=DESCRIBE_TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        message = f"loading the app took over {DESCRIBE_TIMEOUT:g} s (a workflow file blocks?)"
        return _failed_to_load(app_dir, message)
    if proc.returncode != 0:
        lines = proc.stderr.decode(errors="replace").strip().splitlines()
        return _failed_to_load(app_dir, lines[-1] if lines else f"exit code {proc.returncode}")
    try:
        registry = msgspec.json.decode(proc.stdout, type=Registry)
    except msgspec.DecodeError:  # it exited early (os._exit in a workflow file?)
        return _failed_to_load(app_dir, "it exited without describing the app")
    reply: dict[str, Any] = msgspec.to_builtins(registry)
    reply["workflows"] = msgspec.to_builtins(registry.of_the_app())
    return reply


def _failed_to_load(app_dir: Path, message: str) -> dict[str, Any]:
    """The same shape takod reports when its --describe worker fails."""
    return {
        "workflows": [],
        "errors": [
            {
                "file": str(app_dir / "workflows"),
                "line": None,
                "message": f"the worker failed to load the app: {message}",
            }
        ],
    }
