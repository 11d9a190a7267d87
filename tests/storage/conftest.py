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
import trio

from takod.storage import Backend, open_backend

Factory = Callable[[Path], AbstractAsyncContextManager[Backend]]


@asynccontextmanager
async def sqlite(tmp_path: Path) -> AsyncIterator[Backend]:
    """runs.db in a folder of its own, as takod lays it out."""
    backend = open_backend(tmp_path / "apps" / "shop" / "runs.db")
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(backend.run)
            yield backend
            nursery.cancel_scope.cancel()
    finally:
        backend.close()


BACKENDS: dict[str, Factory] = {"sqlite": sqlite}


@pytest.fixture(params=sorted(BACKENDS))
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    """An open, running backend with nothing in it."""
    async with BACKENDS[request.param](tmp_path) as opened:
        yield opened
