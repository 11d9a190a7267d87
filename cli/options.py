"""What every command shares: global options, typed arguments, exit codes, JSON output.

The command lets `--data-dir`, `--socket` and `--database-url` come before or after the command
(`tako --data-dir D runs` == `tako runs --data-dir D`). Click only parses
an option on the command that declares it, so `global_options` declares
them on the group and on every command, and each copy records its value in
one `Settings` object shared by the whole invocation; a value given after
the command wins, being parsed last.

Everything a user can get wrong is checked while parsing (run ids,
durations, JSON payloads), so it is exit 2 before anything is sent.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click
import msgspec

from tako._durations import parse_duration
from tako._paths import find_app_dir, resolve_data_dir, resolve_socket
from tako._records import RUN_ID_PATTERN, RUN_ID_RULE
from tako.cli.payloads import PayloadError, read_payload

F = TypeVar("F", bound=Callable[..., Any])
RUN_ID = re.compile(RUN_ID_PATTERN)

# Exit codes (docs/cli.md). Click's own usage errors already exit with 2.
EXIT_REFUSED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3


if TYPE_CHECKING:  # click >= 8.2 types ParamType by its value; older clicks cannot subscript it
    StrParam = click.ParamType[str, Any]
    FloatParam = click.ParamType[float, Any]
    AnyParam = click.ParamType[Any, Any]
else:
    StrParam = FloatParam = AnyParam = click.ParamType


class Refused(click.ClickException):
    """The supervisor refused the request, or the run failed (exit 1)."""

    exit_code = EXIT_REFUSED


class Unreachable(click.ClickException):
    """The supervisor cannot be reached and nothing else can answer (exit 3)."""

    exit_code = EXIT_UNREACHABLE


class BadInput(click.ClickException):
    """The command line or the app's setup is wrong, found before anything is sent (exit 2)."""

    exit_code = EXIT_USAGE


@dataclass
class Settings:
    """The global options of one invocation, wherever on the command line they were given."""

    data_dir: str | None = None
    socket: str | None = None
    database_url: str | None = None  # `--database-url`; see `offline.database_url`

    def data_path(self) -> Path:
        """`--data-dir`, else `$TAKO_DATA_DIR`, else `.tako` in the app we are in."""
        return resolve_data_dir(find_app_dir(), self.data_dir)

    def socket_path(self) -> Path:
        """`--socket`, else `$TAKO_SOCKET` (unless `--data-dir` was given), else the data dir's."""
        if self.socket:
            return resolve_socket(self.socket)
        if self.data_dir:
            return self.data_path() / "tako.sock"
        return resolve_socket(None)


def settings() -> Settings:
    return click.get_current_context().find_root().ensure_object(Settings)


def _remember(key: str) -> Callable[[click.Context, click.Parameter, Any], None]:
    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> None:
        if value is not None:
            setattr(ctx.find_root().ensure_object(Settings), key, value)

    return callback


CLIENT_HELP = (
    "Where runs.db and the socket live (default: $TAKO_DATA_DIR, else .tako in this "
    "folder or the nearest folder above it that is an app).",
    "The supervisor's socket (default: $TAKO_SOCKET, else DATA_DIR/tako.sock).",
    "The app's PostgreSQL database, for db migrate and reads while the supervisor is "
    "down (default: $TAKO_DATABASE_URL, else [storage] url in tako.toml).",
)
SERVER_HELP = (
    "Where runs.db and the socket live (default: $TAKO_DATA_DIR, else APP_DIR/.tako).",
    "Where to listen (default: DATA_DIR/tako.sock).",
    "Keep the app's runs in this PostgreSQL database (default: $TAKO_DATABASE_URL, else "
    "[storage] url in tako.toml; none: runs.db in DATA_DIR).",
)


def global_options(fn: F, *, helps: tuple[str, str, str] = CLIENT_HELP) -> F:
    """`--data-dir`, `--socket` and `--database-url`, accepted on the group and on every
    command."""
    options = (
        ("--database-url", "URL", "database_url", helps[2]),
        ("--socket", "PATH", "socket", helps[1]),
        ("--data-dir", "DIR", "data_dir", helps[0]),
    )
    for flag, metavar, key, text in options:  # the last applied is listed first in --help
        option = click.option(
            flag, metavar=metavar, expose_value=False, callback=_remember(key), help=text
        )
        fn = option(fn)
    return fn


def server_options(fn: F) -> F:
    """The global options as a supervisor reads them: it listens, it does not look."""
    return global_options(fn, helps=SERVER_HELP)


def json_option(fn: F) -> F:
    return click.option(
        "--json", "as_json", is_flag=True, help="Print one JSON document instead of text."
    )(fn)


def app_option(fn: F) -> F:
    return click.option(
        "--app",
        metavar="NAME",
        help="The app whose runs.db (or PostgreSQL schema) to read when the supervisor is down.",
    )(fn)


class RunIdType(StrParam):
    """A run id: 1 to 128 of `[A-Za-z0-9._:@-]` (ids sort and print safely anywhere)."""

    name = "RUN_ID"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        text = str(value)
        if not RUN_ID.fullmatch(text):
            self.fail(
                f"{text!r} is not a run id: use {RUN_ID_RULE}",
                param,
                ctx,
            )
        return text


class DurationType(FloatParam):
    """`500ms`, `30s`, `1h30m`, `7d` or a number of seconds; converted to seconds."""

    name = "DURATION"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        if isinstance(value, float):
            return value
        try:
            return parse_duration(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


class PayloadType(AnyParam):
    """JSON text, `@path/to/file.json`, or `-` for stdin, parsed to a value."""

    name = "PAYLOAD"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if not isinstance(value, str):
            return value
        try:
            return read_payload(value, sys.stdin.buffer)
        except PayloadError as exc:
            self.fail(str(exc), param, ctx)


RUN_ID_TYPE = RunIdType()
DURATION = DurationType()
PAYLOAD = PayloadType()


def emit_json(value: Any) -> None:
    """Print exactly one JSON document (pretty, UTF-8) on stdout."""
    click.echo(json.dumps(plain(value), indent=2, ensure_ascii=False))


def plain(value: Any) -> Any:
    """`value` as plain JSON data: takod's view forms (`RunView`, `ApprovalView`, a list
    of them) become the objects takod sent, raw values decoded and ISO text kept.
    `steps` and `history`, which takod leaves out unless asked, stay out when unset."""
    if isinstance(value, list):
        return [plain(v) for v in value]
    if not isinstance(value, msgspec.Struct):
        return value
    fields: dict[str, Any] = msgspec.json.decode(msgspec.json.encode(value))
    for optional in ("steps", "history"):
        if optional in fields and fields[optional] is None:
            del fields[optional]
    return fields
