"""Answers for read commands while the supervisor is down.

Runs are read from the app's store with the same helpers takod uses to
answer, so the JSON is identical whether the supervisor is up or not: the
app's schema in PostgreSQL when a database URL is known (`--database-url`,
else `$TAKO_DATABASE_URL`, else `[storage] url` in the app's tako.toml),
else `<data_dir>/apps/<app>/runs.db`, opened read-only. The app is `--app
NAME`, else the app of the current folder (`name` in its tako.toml, else the
folder's name), else (runs.db only) the only app in the data dir. Workflows
are learned by running the worker's `--describe` in a subprocess: user code
is never imported into the CLI.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec

from tako._durations import parse_duration
from tako._paths import find_app_dir
from tako._records import Registry, RunStatus, RunView
from tako.cli.options import BadInput, Unreachable

if TYPE_CHECKING:
    from tako.takod.storage import Reads

T = TypeVar("T")
DESCRIBE_TIMEOUT = 60.0
DATABASE_URL_ENV = "TAKO_DATABASE_URL"  # as takod.config reads it
DEFAULT_LEASE = 30.0  # [workers] lease, as in takod.config


@dataclass(frozen=True)
class Store:
    """Where an app's runs are: runs.db at a path, or the app's schema at a PostgreSQL URL."""

    where: Path | str
    app: str

    @property
    def url(self) -> str | None:
        return self.where if isinstance(self.where, str) else None

    def __str__(self) -> str:
        """What messages name: the path, or the URL without its password, and the schema."""
        if isinstance(self.where, Path):
            return str(self.where)
        from tako.takod.storage import redact
        from tako.takod.storage.postgres.connection import schema_of

        return f"{redact(self.where)} (schema {schema_of(self.app)})"


def app_toml(folder: Path) -> dict[str, Any]:
    """The folder's tako.toml as read, or {} when there is none or it cannot be read."""
    try:
        return tomllib.loads((folder / "tako.toml").read_text())
    except (OSError, ValueError):
        return {}


def _setting(folder: Path, section: str, key: str) -> Any:
    table = app_toml(folder).get(section)
    return table.get(key) if isinstance(table, dict) else None


def app_name(folder: Path) -> str:
    """The app name of a folder: `name` in its tako.toml, else the folder's name."""
    name = app_toml(folder).get("name")
    return name if isinstance(name, str) and name else folder.name


def database_url(flag: str | None) -> str | None:
    """The app's PostgreSQL database: `--database-url`, else `$TAKO_DATABASE_URL`, else
    `[storage] url` in the tako.toml of the app we are in; None: the app is on SQLite."""
    if flag:
        return checked_url(flag, "--database-url")
    if os.environ.get(DATABASE_URL_ENV):
        return checked_url(os.environ[DATABASE_URL_ENV], f"${DATABASE_URL_ENV}")
    folder = find_app_dir()
    url = _setting(folder, "storage", "url")
    return checked_url(url, f"{folder / 'tako.toml'}: [storage] url") if url else None


def checked_url(url: Any, source: str) -> str:
    """A postgresql:// URL, else exit 2 naming where the wrong one came from."""
    if not isinstance(url, str) or not url.startswith(("postgresql://", "postgres://")):
        raise BadInput(f"{source} must be a postgresql:// URL (leave it unset for SQLite)")
    return url


def lease(folder: Path) -> float:
    """`[workers] lease` of the app in `folder`: how long a silent supervisor counts as alive."""
    value = _setting(folder, "workers", "lease")
    try:
        return parse_duration(str(value)) if value is not None else DEFAULT_LEASE
    except ValueError:
        return DEFAULT_LEASE


def find_database(data_dir: Path, app: str | None, down: Unreachable, url: str | None) -> Store:
    """The store to read: the app's schema at `url`, else its runs.db in the data dir.
    The app is `--app`, else the current folder's app, else (runs.db) the only app.

    `down` is the error to raise when there is nothing to read: the supervisor
    is unreachable and no database can stand in for it."""
    if url is not None:
        return Store(url, app or app_name(find_app_dir()))
    apps = data_dir / "apps"
    if app is not None:
        path = apps / app / "runs.db"
        if not path.exists():
            raise Unreachable(
                f"{down.message}\n(and there is no database for app {app!r} at {path})"
            )
        return Store(path, app)
    here = app_name(find_app_dir())
    if (apps / here / "runs.db").exists():
        return Store(apps / here / "runs.db", here)
    found = sorted(p.parent.name for p in apps.glob("*/runs.db")) if apps.is_dir() else []
    if len(found) == 1:
        return Store(apps / found[0] / "runs.db", found[0])
    if not found:
        raise Unreachable(f"{down.message}\n(and there is no runs.db under {apps} to read)")
    names = ", ".join(found)
    raise BadInput(f"{data_dir} holds several apps ({names}): pick one with --app NAME")


def read(store: Store, fn: Callable[[Reads], T]) -> T:
    """Call `fn` with the read views on the app's store, without a supervisor."""
    if store.url is not None:
        require_psycopg()
    from tako.takod.storage import open_reads  # only needed while the supervisor is down

    with open_reads(store.where, store.app) as reads:
        return fn(reads)


def require_psycopg() -> None:
    """PostgreSQL needs psycopg, an optional dependency: say how to install it (exit 2)."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        raise BadInput(
            "the app's database is PostgreSQL, which needs psycopg: pip install 'tako[postgres]'"
        ) from None


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
    """The app's workflows and load errors, from `python -m tako.worker_runtime APP --describe`."""
    # -P: the current folder must not shadow installed packages (a `tako/` clone here)
    argv = [sys.executable, "-P", "-m", "tako.worker_runtime", str(app_dir), "--describe"]
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
