"""An app's settings: `tako.toml` (all optional) merged with the arguments of `serve`."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Literal

import msgspec

from tako._durations import parse_duration, parse_size
from tako._errors import TakoError


class ConfigError(TakoError):
    """tako.toml is invalid."""

    code = "config"


class WorkerSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    idle_timeout: float = 3.0
    concurrency: int = 100
    max_workers: int = 1
    runtime: Literal["asyncio", "trio"] = "asyncio"
    shutdown_grace: float = 10.0
    lease: float = 30.0  # a busy worker silent this long loses its runs to another worker


class RunSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    retention: float = 7 * 86400.0
    max_payload: int = 1024 * 1024
    signal_ttl: float = 7 * 86400.0


class StorageSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    durability: Literal["full", "normal"] = "full"
    # postgresql://...: the app's runs in PostgreSQL, shared by several supervisors;
    # unset: runs.db in the data dir. $TAKO_DATABASE_URL overrides it.
    url: str | None = None


class ApprovalSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    webhook: str | None = None  # gets every ApprovalEvent as a signed JSON POST
    webhook_secret_env: str = "TAKO_WEBHOOK_SECRET"  # HMAC-SHA256 key, read from this variable
    webhook_secret: str | None = None  # or given here (prefer the variable)


DATABASE_URL_ENV = "TAKO_DATABASE_URL"


class HttpSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    enabled: bool = True  # `tako dev` / `tako serve` serve the HTTP API and pages
    listen: str | None = None  # HOST:PORT; unset: 127.0.0.1:8787, or the next free port
    public_url: str | None = None  # the base of every link; unset: the address served
    secret_env: str = "TAKO_HTTP_SECRET"  # the links' HMAC key; unset: <data_dir>/http.secret


class AppConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: str
    workers: WorkerSettings = msgspec.field(default_factory=WorkerSettings)
    runs: RunSettings = msgspec.field(default_factory=RunSettings)
    storage: StorageSettings = msgspec.field(default_factory=StorageSettings)
    approvals: ApprovalSettings = msgspec.field(default_factory=ApprovalSettings)
    http: HttpSettings = msgspec.field(default_factory=HttpSettings)


_DURATIONS = {
    ("workers", "lease"),
    ("workers", "idle_timeout"),
    ("workers", "shutdown_grace"),
    ("runs", "retention"),
    ("runs", "signal_ttl"),
}
_SIZES = {("runs", "max_payload")}


def load_config(app_dir: Path, database_url: str | None = None) -> AppConfig:
    """Read `<app_dir>/tako.toml`; every error names the file and the setting. The
    database is `database_url` if given (a command's `--database-url`), else
    `$TAKO_DATABASE_URL`, else the file's `[storage] url`."""
    path = app_dir / "tako.toml"
    raw: dict[str, object] = {}
    if path.exists():
        try:
            raw = tomllib.loads(path.read_text())
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: {exc}") from None
    raw.setdefault("name", app_dir.absolute().name)
    for section, key in _DURATIONS | _SIZES:
        table = raw.get(section)
        if isinstance(table, dict) and key in table:
            try:
                parse = parse_size if (section, key) in _SIZES else parse_duration
                table[key] = parse(table[key])
            except ValueError as exc:
                raise ConfigError(f"{path}: [{section}] {key}: {exc}") from None
    try:
        config = msgspec.convert(raw, AppConfig)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    given = [
        (database_url, "--database-url"),
        (os.environ.get(DATABASE_URL_ENV), f"${DATABASE_URL_ENV}"),
        (config.storage.url, f"{path}: [storage] url"),
    ]
    for url, where in given:
        if url:
            if not url.startswith(("postgresql://", "postgres://")):
                raise ConfigError(
                    f"{where} must be a postgresql:// URL (leave it unset for SQLite)"
                )
            config.storage.url = url
            break
    return config
