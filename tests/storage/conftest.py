"""The backends the conformance suite runs against, and the one fixture that opens them.

Each entry of `BACKENDS` is an async factory: given a fresh folder of the test's own, it
yields an open Backend whose `run()` is going, and closes it afterwards. Every test in
tests/storage takes the `backend` fixture and runs once per entry, through the
`takod.storage.interface` verbs only: a new backend is added here, and nothing else.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import pytest

from tako.takod.storage import Backend, open_backend
from tests.pg import database_url, drop_app, fresh_app
from tests.storage.kit import serving

Factory = Callable[[Path], AbstractAsyncContextManager[Backend]]


@asynccontextmanager
async def sqlite(tmp_path: Path) -> AsyncIterator[Backend]:
    """runs.db in a folder of its own, as takod lays it out."""
    async with serving(open_backend(tmp_path / "apps" / "shop" / "runs.db")) as backend:
        yield backend


@asynccontextmanager
async def postgres(tmp_path: Path) -> AsyncIterator[Backend]:
    """A schema of its own on the test database (see tests/pg.py), dropped afterwards."""
    from tako.takod.storage.postgres import PostgresBackend

    url, app = database_url(), fresh_app()
    try:
        async with serving(PostgresBackend(url, app)) as backend:
            yield backend
    finally:
        drop_app(url, app)


BACKENDS: dict[str, Factory] = {"sqlite": sqlite, "postgres": postgres}


@pytest.fixture(params=sorted(BACKENDS))
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    """An open, running backend with nothing in it."""
    async with BACKENDS[request.param](tmp_path) as opened:
        yield opened
