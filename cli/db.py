"""`tako db migrate`: create or upgrade the app's schema in PostgreSQL.

takod does the same at start (safely when several start at once); this
command lets a deploy do it first, with its own credentials. SQLite needs
none: takod migrates runs.db when it opens it.
"""

from __future__ import annotations

import click

from tako._paths import find_app_dir
from tako.cli import offline
from tako.cli.options import (
    BadInput,
    Refused,
    Unreachable,
    app_option,
    emit_json,
    global_options,
    json_option,
    settings,
)

CONNECT_TIMEOUT = 10  # seconds: an unreachable database is reported, not waited on


@click.group("db", short_help="Manage the app's PostgreSQL database.")
@global_options
def db_group() -> None:
    """Manage the app's PostgreSQL database."""


@db_group.command("migrate", short_help="Create or upgrade the app's schema.")
@app_option
@json_option
@global_options
def migrate_cmd(app: str | None, as_json: bool) -> None:
    """Create or upgrade the app's schema (`tako_<app>`) in its PostgreSQL database.

    The database is --database-url, else $TAKO_DATABASE_URL, else [storage] url in the
    app's tako.toml; the app is --app, else the app of the current folder."""
    url = offline.database_url(settings().database_url)
    if url is None:
        raise BadInput(
            "no PostgreSQL database to migrate: pass --database-url URL, set "
            "$TAKO_DATABASE_URL, or set [storage] url in tako.toml (an app on SQLite needs "
            "no migrate: takod upgrades runs.db when it starts)"
        )
    offline.require_psycopg()
    import psycopg

    from tako.takod.storage import StoreError, redact
    from tako.takod.storage.postgres.connection import schema_of
    from tako.takod.storage.postgres.schema import migrate

    name = app or offline.app_name(find_app_dir())
    try:  # reachable? (migrate reports both an unreachable and a newer schema as StoreError)
        psycopg.connect(url, connect_timeout=CONNECT_TIMEOUT).close()
    except psycopg.Error as exc:
        raise Unreachable(f"cannot reach the database at {redact(url)}: {exc}") from None
    try:
        before, after = migrate(url, name)
    except StoreError as exc:
        raise Refused(exc.message) from None
    schema = schema_of(name)
    if as_json:
        emit_json({"schema": schema, "before": before, "after": after})
    elif before == after:
        click.echo(f"schema {schema}: already at version {after}")
    else:
        click.echo(f"schema {schema}: version {before} -> {after}")
