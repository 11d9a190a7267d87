"""The pytest plugin behind `tako_env`, registered through the package's entry points.

It imports nothing heavy until a test asks for the fixture, so installing tako
costs other projects' test runs nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tako.testing import Env


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        "tako_app_dir",
        "the tako app the tako_env fixture serves (a folder with workflows/), relative to"
        " the ini file; default: the nearest folder above the test file that has one",
    )


def _find_app(request: pytest.FixtureRequest) -> Path:
    configured = request.config.getini("tako_app_dir")
    if configured:
        base = request.config.inipath.parent if request.config.inipath else Path.cwd()
        return (base / str(configured)).resolve()
    start = Path(str(request.path)).resolve().parent
    for folder in (start, *start.parents):
        if (folder / "workflows").is_dir():
            return folder
    raise pytest.UsageError(
        f"tako_env: no folder with workflows/ above {start}; set tako_app_dir in the"
        " pytest ini options or override the tako_app_dir fixture"
    )


@pytest.fixture
def tako_app_dir(request: pytest.FixtureRequest) -> Path:
    """The app the `tako_env` fixture serves; override it to choose another."""
    return _find_app(request)


@pytest.fixture
def tako_env(tako_app_dir: Path) -> Iterator[Env]:
    """An open `tako.testing.Env` for the app: a supervisor of its own on a stopped
    clock and a fresh data dir, closed after the test. Await its methods in asyncio
    or trio tests; use `tako_env.sync` in plain ones."""
    from tako.testing import Env

    env = Env(tako_app_dir)
    env.sync.open()
    try:
        yield env
    finally:
        env.sync.close()
