"""Reading an app's PostgreSQL schema without a supervisor (the CLI while it is down)."""

from __future__ import annotations

import pytest

from tako.takod.storage import StoreError, open_reads
from tako.takod.storage.postgres.schema import migrate, migrations
from tests.pg import database_url, drop_app, fresh_app


def test_an_app_without_its_schema_yet_is_told_to_migrate() -> None:
    url, app = database_url(), fresh_app()
    refused = pytest.raises(StoreError, match=rf"no schema tako_{app} .*`tako db migrate`")
    with refused, open_reads(url, app) as reads:
        reads.counts()
    try:
        assert migrate(url, app) == (0, len(migrations()))
        with open_reads(url, app) as reads:
            assert reads.counts() == {}
    finally:
        drop_app(url, app)
